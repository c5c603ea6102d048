package nio

import (
	"io"
	"net"
)

// A nodeSide is the node end of a Bridge. For a node's port it is the UDP
// tunnel to the node's process; for a cloud's port a TAP device or an
// AF_PACKET socket on a host interface; for a switch or hub port the
// fabric itself. Whatever it is, the link side, the two directions, the
// filters, capture, suspension and counters are the bridge's: the node
// side only takes the frames that come from the link (deliver), and a
// node side with a file descriptor feeds the other direction through the
// bridge's node reader (startNodeReader), while a fabric feeds it by
// calling that direction's process from the goroutines of its other
// ports.
type nodeSide interface {
	// deliver hands frames bt.siov[:k], which passed the link->node
	// direction, to the node. snd is the calling goroutine's sender (the
	// direction's, under its mu, or a delay scheduler's); what deliver
	// forwards is counted in snd's tally. deliver must not retain bt.
	deliver(snd *sender, bt *batch, k int)
	// linkChanged tells the node side that the bridge's link was
	// attached, replaced or detached. The caller holds the bridge's mu.
	linkChanged()
	// close releases the node side; a node reader, if any, then returns.
	close() error
}

// fdNode is a node side that is a file descriptor, read by the bridge's
// node reader and written by its senders: the UDP tunnel socket of
// OpenBridge, the TAP device of OpenTAP, the AF_PACKET socket of
// OpenEthernet.
type fdNode struct {
	sock
	file   io.Closer    // the *net.UDPConn or *os.File; closing it ends the node reader
	tunnel *net.UDPConn // the tunnel, for a bridge opened by OpenBridge
}

func (n *fdNode) deliver(snd *sender, bt *batch, k int) { snd.send(&n.sock, bt, k) }
func (n *fdNode) linkChanged()                          {}
func (n *fdNode) close() error                          { return n.file.Close() }
