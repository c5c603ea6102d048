package nio

import "log/slog"

// A Hub is an in-process Ethernet hub, the data plane of GNS3's
// ethernet_hub node: every frame that comes in on a port goes out on
// every other port that has a link, as it is. It has no VLANs and learns
// nothing. Each port is a Bridge (OpenPort), filtered, suspended and
// captured like any bridge.
//
// Its methods are safe for concurrent use, also while frames flow.
type Hub struct {
	fab fabric
}

// HubConfig configures a Hub.
type HubConfig struct {
	// Name is used in logs and errors, and names the ports' bridges
	// "<name>/<port number>".
	Name string
	// Logger receives the ports' rare warnings; nil discards them.
	Logger *slog.Logger
	// Plane, if not nil, splices a port's link with a bridge of the same
	// Plane (a node's port, not another fabric's) whose link is its
	// mirror image on loopback.
	Plane *Plane
}

// NewHub returns a hub without ports.
func NewHub(cfg HubConfig) *Hub {
	h := &Hub{}
	h.fab.init("hub", cfg.Name, cfg.Logger, cfg.Plane, h)
	return h
}

// OpenPort adds port number (0 or more) and returns its bridge, without
// a link. Closing the bridge removes the port. It fails if the number is
// taken (ErrPortExists) or the hub is closed (net.ErrClosed).
func (h *Hub) OpenPort(number int) (*Bridge, error) { return h.fab.open(number, nil) }

// PortStats returns the counters of every open port, by number.
func (h *Hub) PortStats() []PortStats { return h.fab.stats() }

// Close closes every port's bridge and refuses new ports. It returns once
// every goroutine of every port has returned.
func (h *Hub) Close() error { return h.fab.close() }

func (h *Hub) forget(*fabricPort) {}

// forward repeats the frames on every other linked port.
func (h *Hub) forward(in *fabricPort, bt *batch, n int, t *tally) {
	t.forwarded(bt, n)
	ports := *h.fab.ports.Load()
	var out *fabricPort // the only port to send to, while there is one
	others := 0
	for _, q := range ports {
		if q != in && q.linked() {
			out = q
			others++
		}
	}
	switch others {
	case 0:
		return
	case 1:
		// A two-port hub (a tap point on a link): the port sends the very
		// batch read from the link.
		out.send(bt, n)
		return
	}
	ebt := batchPool.get()
	defer batchPool.put(ebt)
	for _, q := range ports {
		if q == in || !q.linked() {
			continue
		}
		copy(ebt.siov[:n], bt.siov[:n])
		ebt.shared = 1<<n - 1 // every frame goes to several ports
		q.send(ebt, n)
	}
}
