<?php
// Horde_Mail_Autoconfig (Debian php-horde-mail-autoconfig): what its Thunderbird-style driver offers for
// one address, fetched through an HTTP proxy. Horde_Mail_Autoconfig::getMailConfig() then connects to each
// offered server in turn and returns the first that answers; the servers here do not exist, so this script
// stops at the offer (the driver's mailSearch/msaSearch), which is what a user's connection would follow.
// Its Srv and Guess drivers ask the system resolver and probe ports, which no proxy sees: not run here.
// Usage: php -d curl.cainfo=CA_BUNDLE horde_autoconfig.php EMAIL PROXY_PORT
// Output: {"servers": ["kind host:port", ...]} or {"error": "<exception class>", "message": ...}.
require_once 'Horde/Autoloader/Default.php';

[, $email, $port] = $argv;
$driver = new Horde_Mail_Autoconfig_Driver_Thunderbird();
$driver->http = new Horde_Http_Client(array(
    'request.proxyServer' => '127.0.0.1',
    'request.proxyPort' => (int)$port,
    'request.timeout' => 20,
));
$servers = array();
try {
    $rfc822 = new Horde_Mail_Rfc822();
    $address = $rfc822->parseAddressList($email, array('limit' => 1))[0];
    $options = array('email' => $address);
    foreach (array('incoming' => 'mailSearch', 'outgoing' => 'msaSearch') as $kind => $search) {
        foreach ((array)$driver->$search(array($address->host_idn), $options) as $server) {
            if ($server) {
                $servers[] = $kind . ' ' . $server->host . ':' . $server->port;
            }
        }
    }
} catch (Exception $e) {
    echo json_encode(array('error' => get_class($e), 'message' => substr($e->getMessage(), 0, 300))), "\n";
    exit(0);
}
echo json_encode(array('servers' => $servers)), "\n";
