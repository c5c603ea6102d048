package ethswitch

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"slices"
	"strings"
	"sync"
	"time"
)

// The switch's console, beyond GNS3 (whose Dynamips switch has none): a
// small command line in the style of a managed switch, served on a port
// of 127.0.0.1 that the node's console proxy forwards to. The proxy puts
// clients in character mode, so the line is edited and echoed here.

// macRow is one entry of the MAC address table as the console shows it.
type macRow struct {
	VLAN int
	MAC  net.HardwareAddr
	Port string
	Age  time.Duration
}

// portRow is one port as the console shows it.
type portRow struct {
	Name      string
	Number    int
	Type      string
	VLAN      int
	EtherType string
	Linked    bool
	RxPackets uint64
	RxBytes   uint64
	TxPackets uint64
	TxBytes   uint64
	Drops     uint64
}

// fabricView is what the console reads of the switch.
type fabricView interface {
	macs() []macRow
	clearMACs()
	ports() []portRow
	name() string
}

// cli serves the console; Close stops it and waits for its sessions.
type cli struct {
	ln   net.Listener
	view fabricView
	wg   sync.WaitGroup

	mu    sync.Mutex // guards the following
	conns map[net.Conn]bool
}

// serveCLI starts the console on a free port of 127.0.0.1.
func serveCLI(view fabricView) (*cli, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	c := &cli{ln: ln, view: view, conns: map[net.Conn]bool{}}
	c.wg.Go(c.accept)
	return c, nil
}

// Addr is where the console listens.
func (c *cli) Addr() string { return c.ln.Addr().String() }

func (c *cli) accept() {
	for {
		conn, err := c.ln.Accept()
		if err != nil {
			return
		}
		c.mu.Lock()
		c.conns[conn] = true
		c.mu.Unlock()
		c.wg.Go(func() {
			defer func() {
				c.mu.Lock()
				delete(c.conns, conn)
				c.mu.Unlock()
				conn.Close()
			}()
			session(conn, c.view)
		})
	}
}

// Close stops the console and its sessions.
func (c *cli) Close() error {
	err := c.ln.Close()
	c.mu.Lock()
	for conn := range c.conns {
		conn.Close()
	}
	c.mu.Unlock()
	c.wg.Wait()
	return err
}

// maxLine bounds a command line.
const maxLine = 512

// session reads command lines from one client and answers them.
func session(conn io.ReadWriter, view fabricView) {
	r := bufio.NewReader(conn)
	w := bufio.NewWriter(conn)
	prompt := func() {
		fmt.Fprintf(w, "%s# ", view.name())
		w.Flush()
	}
	fmt.Fprintf(w, "\r\nlabd Ethernet switch %s. Type \"help\" for the commands.\r\n\r\n", view.name())
	prompt()
	var line []byte
	lastCR := false
	for {
		b, err := r.ReadByte()
		if err != nil {
			return
		}
		switch {
		case b == '\n' && lastCR: // CR LF: the line already ended
		case b == '\r' || b == '\n':
			w.WriteString("\r\n")
			if !answer(w, view, string(line)) {
				w.Flush()
				return
			}
			line = line[:0]
			prompt()
		case b == 0x7f || b == 0x08: // DEL, BS
			if len(line) > 0 {
				line = line[:len(line)-1]
				w.WriteString("\b \b")
			}
		case b == 0x03: // ^C drops the line
			line = line[:0]
			w.WriteString("^C\r\n")
			prompt()
		case b >= 0x20 && b < 0x7f && len(line) < maxLine:
			line = append(line, b)
			w.WriteByte(b)
		}
		lastCR = b == '\r'
		if r.Buffered() == 0 {
			w.Flush()
		}
	}
}

// commands are the console's commands, each word abbreviable as on a
// managed switch ("sh mac add").
var commands = []struct {
	words []string
	help  string
	do    func(w io.Writer, view fabricView)
}{
	{[]string{"show", "mac", "address-table"}, "the learned MAC addresses, by VLAN", showMACs},
	{[]string{"show", "vlan"}, "the VLANs and their ports", showVLANs},
	{[]string{"show", "interfaces"}, "the ports, their mode and counters", showInterfaces},
	{[]string{"clear", "mac", "address-table"}, "forget every learned MAC address", func(w io.Writer, view fabricView) {
		view.clearMACs()
		fmt.Fprint(w, "MAC address table cleared\r\n")
	}},
}

// answer answers one command line; false ends the session.
func answer(w io.Writer, view fabricView, line string) bool {
	fields := strings.Fields(strings.ToLower(line))
	if len(fields) == 0 {
		return true
	}
	switch fields[0] {
	case "exit", "quit", "logout":
		return false
	case "help", "?":
		showHelp(w)
		return true
	}
	for _, c := range commands {
		if matches(fields, c.words) {
			c.do(w, view)
			return true
		}
	}
	fmt.Fprintf(w, "%% Unknown command %q: type \"help\"\r\n", line)
	return true
}

// matches reports whether each field abbreviates the command's word.
func matches(fields, words []string) bool {
	if len(fields) != len(words) {
		return false
	}
	for i, f := range fields {
		if !strings.HasPrefix(words[i], f) {
			return false
		}
	}
	return true
}

func showHelp(w io.Writer) {
	for _, c := range commands {
		fmt.Fprintf(w, "  %-24s %s\r\n", strings.Join(c.words, " "), c.help)
	}
	fmt.Fprintf(w, "  %-24s %s\r\n", "help", "this list")
	fmt.Fprintf(w, "  %-24s %s\r\n", "exit", "close this session")
}

// dotted writes a MAC address the way switches do: 0050.7966.6800.
func dotted(mac net.HardwareAddr) string {
	h := fmt.Sprintf("%x", []byte(mac))
	if len(h) != 12 {
		return mac.String()
	}
	return h[0:4] + "." + h[4:8] + "." + h[8:12]
}

func showMACs(w io.Writer, view fabricView) {
	rows := view.macs()
	slices.SortFunc(rows, func(a, b macRow) int {
		if a.VLAN != b.VLAN {
			return a.VLAN - b.VLAN
		}
		return strings.Compare(a.MAC.String(), b.MAC.String())
	})
	fmt.Fprint(w, "          Mac Address Table\r\n-------------------------------------------\r\n\r\n")
	fmt.Fprintf(w, "%-6s %-16s %-9s %-12s %s\r\n", "Vlan", "Mac Address", "Type", "Ports", "Age")
	fmt.Fprintf(w, "%-6s %-16s %-9s %-12s %s\r\n", "----", "-----------", "--------", "-----", "---")
	for _, r := range rows {
		fmt.Fprintf(w, "%-6d %-16s %-9s %-12s %ds\r\n", r.VLAN, dotted(r.MAC), "DYNAMIC", r.Port, int(r.Age.Seconds()))
	}
	fmt.Fprintf(w, "Total Mac Addresses for this criterion: %d\r\n", len(rows))
}

func showVLANs(w io.Writer, view fabricView) {
	members := map[int][]string{}
	var trunks []string
	for _, p := range view.ports() {
		switch p.Type {
		case "dot1q":
			members[p.VLAN] = append(members[p.VLAN], p.Name+"(native)")
			trunks = append(trunks, p.Name)
		default:
			members[p.VLAN] = append(members[p.VLAN], p.Name)
		}
	}
	vlans := make([]int, 0, len(members))
	for v := range members {
		vlans = append(vlans, v)
	}
	slices.Sort(vlans)
	fmt.Fprintf(w, "%-5s %-32s %-9s %s\r\n", "VLAN", "Name", "Status", "Ports")
	fmt.Fprintf(w, "%-5s %-32s %-9s %s\r\n", "----", "--------------------------------", "---------", "-------------------------------")
	for _, v := range vlans {
		name := fmt.Sprintf("VLAN%04d", v)
		if v == 1 {
			name = "default"
		}
		fmt.Fprintf(w, "%-5d %-32s %-9s %s\r\n", v, name, "active", strings.Join(members[v], ", "))
	}
	if len(trunks) > 0 {
		fmt.Fprintf(w, "\r\n802.1Q trunks (every VLAN): %s\r\n", strings.Join(trunks, ", "))
	}
}

func showInterfaces(w io.Writer, view fabricView) {
	for _, p := range view.ports() {
		state := "down (no link)"
		if p.Linked {
			state = "up"
		}
		mode := fmt.Sprintf("access, VLAN %d", p.VLAN)
		switch p.Type {
		case "dot1q":
			mode = fmt.Sprintf("802.1Q trunk, native VLAN %d", p.VLAN)
		case "qinq":
			et := p.EtherType
			if et == "" {
				et = "0x8100"
			}
			mode = fmt.Sprintf("QinQ, outer VLAN %d, ethertype %s", p.VLAN, et)
		}
		fmt.Fprintf(w, "%s (port %d) is %s\r\n", p.Name, p.Number, state)
		fmt.Fprintf(w, "  Mode %s\r\n", mode)
		fmt.Fprintf(w, "  %d packets input, %d bytes\r\n", p.RxPackets, p.RxBytes)
		fmt.Fprintf(w, "  %d packets output, %d bytes\r\n", p.TxPackets, p.TxBytes)
		fmt.Fprintf(w, "  %d drops\r\n", p.Drops)
	}
}
