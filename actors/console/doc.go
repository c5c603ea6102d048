// Package console is labd's console proxy: it serves a node's public
// telnet console port itself and relays it to the console the node's
// process (VPCS, later QEMU's serial port) opens on an internal TCP port on
// 127.0.0.1, as GNS3's telnet wrapper does.
//
// A Proxy owns the public listener, the one connection to the process and
// every client; Close stops and waits for all of them. The contract:
//
//   - Any number of clients at once, telnet over TCP or any io.ReadWriter
//     handed to Serve (a WebSocket console). A client may leave and come
//     back any number of times; nobody else notices.
//   - Output of the process goes unchanged to every client through a
//     bounded per-client queue. A client whose queue overflows or whose
//     write stalls for 5 s is disconnected; it never slows the others or
//     the reader of the process.
//   - Input of every client goes to the process with telnet commands
//     stripped (IAC IAC is a literal 0xFF). Writes are serialised, so two
//     clients' bytes never interleave within one read. Input typed while
//     the process is not connected, or that the process does not accept
//     within 5 s, is dropped.
//   - Each new client first gets the negotiation GNS3 sends (WILL ECHO,
//     WILL SUPPRESS-GO-AHEAD, WILL BINARY, DO BINARY), then a replay of at
//     most the last 2 KiB of output, starting at a line boundary, so that
//     it sees the prompt; older output is gone.
//   - If the process closes its console (it died, or it restarted), clients
//     stay connected and get "\r\n[console disconnected]\r\n"; the proxy
//     reconnects in the background with backoff (50 ms doubling to 2 s)
//     until Close. Reset drops the connection and reconnects at once,
//     without that notice.
//
// It imports only the standard library: the node actor drives it, and it
// must not import actors, events, replay or http/....
package console
