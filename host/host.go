// Package host reads facts about the machine labd runs on: memory, swap,
// CPU and disk usage, load average and network interfaces, from /proc and
// the kernel. It imports no other labd package.
package host

import (
	"bufio"
	"bytes"
	"fmt"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Memory is the memory and swap of the host, in bytes.
type Memory struct {
	Total, Available    uint64
	SwapTotal, SwapFree uint64
}

// UsedPercent is the share of memory not available, as psutil reports it.
func (m Memory) UsedPercent() float64 { return percent(m.Total-m.Available, m.Total) }

// SwapUsedPercent is the share of swap in use.
func (m Memory) SwapUsedPercent() float64 { return percent(m.SwapTotal-m.SwapFree, m.SwapTotal) }

func percent(part, whole uint64) float64 {
	if whole == 0 {
		return 0
	}
	return round1(float64(part) * 100 / float64(whole))
}

func round1(f float64) float64 { return float64(int64(f*10+0.5)) / 10 }

// ReadMemory reads /proc/meminfo.
func ReadMemory() (Memory, error) {
	b, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return Memory{}, err
	}
	var m Memory
	fields := map[string]*uint64{"MemTotal:": &m.Total, "MemAvailable:": &m.Available, "SwapTotal:": &m.SwapTotal, "SwapFree:": &m.SwapFree}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 2 {
			continue
		}
		if dst, ok := fields[f[0]]; ok {
			kb, err := strconv.ParseUint(f[1], 10, 64)
			if err != nil {
				return Memory{}, fmt.Errorf("host: /proc/meminfo %s: %w", f[0], err)
			}
			*dst = kb * 1024
		}
	}
	return m, nil
}

// LoadAverage reads the 1, 5 and 15 minute load averages.
func LoadAverage() ([3]float64, error) {
	var la [3]float64
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return la, err
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return la, fmt.Errorf("host: /proc/loadavg: %q", b)
	}
	for i := range la {
		if la[i], err = strconv.ParseFloat(f[i], 64); err != nil {
			return la, fmt.Errorf("host: /proc/loadavg: %w", err)
		}
	}
	return la, nil
}

// Disk is the usage of the file system holding a path, in bytes.
type Disk struct {
	Total, Free uint64
}

// UsedPercent is the share of the file system in use, counting the blocks
// reserved for root as used, as psutil does.
func (d Disk) UsedPercent() float64 { return percent(d.Total-d.Free, d.Total) }

// DiskUsage returns the usage of the file system holding path.
func DiskUsage(path string) (Disk, error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(path, &st); err != nil {
		return Disk{}, fmt.Errorf("host: statfs %s: %w", path, err)
	}
	bs := uint64(st.Bsize)
	return Disk{Total: st.Blocks * bs, Free: st.Bavail * bs}, nil
}

// CPU measures the CPU usage of the whole host between two calls of
// Percent, like psutil.cpu_percent(interval=None). The zero value is ready.
type CPU struct {
	mu          sync.Mutex // guards the following
	busy, total uint64
	at          time.Time
	last        float64
}

// minInterval keeps several callers (one per notification client) from
// measuring over windows too short to mean anything.
const minInterval = 500 * time.Millisecond

// Percent returns the CPU usage since the previous call, 0 on the first.
func (c *CPU) Percent() float64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := time.Now()
	if !c.at.IsZero() && now.Sub(c.at) < minInterval {
		return c.last
	}
	busy, total, err := readCPUTimes()
	if err != nil {
		return c.last
	}
	if !c.at.IsZero() && total > c.total {
		c.last = round1(float64(busy-c.busy) * 100 / float64(total-c.total))
	}
	c.busy, c.total, c.at = busy, total, now
	return c.last
}

// readCPUTimes returns the busy and total jiffies of all CPUs.
func readCPUTimes() (busy, total uint64, err error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, 0, err
	}
	line, _, _ := bytes.Cut(b, []byte("\n"))
	f := strings.Fields(string(line))
	if len(f) < 5 || f[0] != "cpu" {
		return 0, 0, fmt.Errorf("host: /proc/stat: %q", line)
	}
	for i, s := range f[1:] {
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			return 0, 0, fmt.Errorf("host: /proc/stat: %w", err)
		}
		// user nice system idle iowait irq softirq steal guest guest_nice:
		// guest time is already counted in user and nice.
		if i >= 8 {
			break
		}
		total += v
		if i != 3 && i != 4 { // idle, iowait
			busy += v
		}
	}
	return busy, total, nil
}

// Interface is a network interface of the host.
type Interface struct {
	Name      string
	IPAddress string // first IPv4 address, "" if none
	Netmask   string
	MAC       string
	// Type is "tap" for interfaces named tap*, "ethernet" otherwise: the
	// only distinction GNS3 makes.
	Type string
	// Special marks the interfaces GNS3 does not offer a cloud by default:
	// loopback, other hypervisors' and containers' bridges, and the like.
	Special bool
}

// specialPrefixes are GNS3's (gns3server/utils/interfaces.py), compared
// with the name in lower case.
var specialPrefixes = []string{"lo", "vmnet", "vboxnet", "docker", "lxcbr", "virbr", "ovs-system",
	"veth", "fw", "p2p", "bridge", "vmware", "virtualbox", "gns3"}

// classify gives an interface its GNS3 type and special mark, which
// depend on its name only. GNS3 means names ending in "-nic" to be
// special too (it wrote the suffix as a string where it meant a tuple).
func classify(name string) Interface {
	it := Interface{Name: name, Type: "ethernet"}
	if strings.HasPrefix(name, "tap") {
		it.Type = "tap"
	}
	lower := strings.ToLower(name)
	it.Special = strings.HasSuffix(lower, "-nic") ||
		slices.ContainsFunc(specialPrefixes, func(p string) bool { return strings.HasPrefix(lower, p) })
	return it
}

// Interfaces lists the host's network interfaces, sorted by name.
func Interfaces() ([]Interface, error) {
	ifs, err := net.Interfaces()
	if err != nil {
		return nil, fmt.Errorf("host: interfaces: %w", err)
	}
	out := make([]Interface, 0, len(ifs))
	for _, ifc := range ifs {
		it := classify(ifc.Name)
		it.MAC = ifc.HardwareAddr.String()
		// An interface that vanished meanwhile just has no address.
		addrs, _ := ifc.Addrs()
		for _, a := range addrs {
			if ipn, ok := a.(*net.IPNet); ok && ipn.IP.To4() != nil {
				it.IPAddress = ipn.IP.String()
				it.Netmask = net.IP(ipn.Mask).String()
				break
			}
		}
		out = append(out, it)
	}
	slices.SortFunc(out, func(a, b Interface) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
}
