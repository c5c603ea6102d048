package api

import (
	"net/http"
	"runtime"

	"github.com/julienschmidt/httprouter"

	"labd/host"
)

type interfaceV1 struct {
	ID        string `json:"id"`
	IPAddress string `json:"ip_address"`
	Name      string `json:"name"`
}

type interfaceV2 struct {
	ID         string `json:"id"`
	IPAddress  string `json:"ip_address"`
	MACAddress string `json:"mac_address"`
	Name       string `json:"name"`
	Netmask    string `json:"netmask"`
	Type       string `json:"type"`
}

type portsJSON struct {
	ConsolePortRange [2]int `json:"console_port_range"`
	ConsolePorts     []int  `json:"console_ports"`
	UDPPortRange     [2]int `json:"udp_port_range"`
	UDPPorts         []int  `json:"udp_ports"`
}

type statisticsJSON struct {
	MemoryTotal        uint64 `json:"memory_total"`
	MemoryFree         uint64 `json:"memory_free"`
	MemoryUsed         uint64 `json:"memory_used"`
	SwapTotal          uint64 `json:"swap_total"`
	SwapFree           uint64 `json:"swap_free"`
	SwapUsed           uint64 `json:"swap_used"`
	CPUUsagePercent    int    `json:"cpu_usage_percent"`
	MemoryUsagePercent int    `json:"memory_usage_percent"`
	SwapUsagePercent   int    `json:"swap_usage_percent"`
	DiskUsagePercent   int    `json:"disk_usage_percent"`
	LoadAveragePercent [3]int `json:"load_average_percent"`
}

func (s *Server) networkRoutes() {
	for _, prefix := range []string{"/v1/projects", "/v2/compute/projects"} {
		s.route("POST", prefix+"/{project_id}/ports/udp", func(w http.ResponseWriter, r *http.Request, ps httprouter.Params) error {
			id, err := projectIDParam(ps)
			if err != nil {
				return err
			}
			if err := decodeBody(r, &struct{}{}, s.cfg.MaxBodyBytes, true); err != nil {
				return err
			}
			port, err := s.cfg.Client.AllocateUDPPort(r.Context(), id)
			if err != nil {
				return err
			}
			writeJSON(w, http.StatusCreated, map[string]int{"udp_port": port})
			return nil
		})
	}
	s.route("GET", "/v1/interfaces", func(w http.ResponseWriter, r *http.Request, _ httprouter.Params) error {
		ifs, err := host.Interfaces()
		if err != nil {
			return err
		}
		out := make([]interfaceV1, len(ifs))
		for i, it := range ifs {
			out[i] = interfaceV1{ID: it.Name, IPAddress: it.IPAddress, Name: it.Name}
		}
		writeJSON(w, http.StatusOK, out)
		return nil
	})
	s.route("GET", "/v2/compute/network/interfaces", func(w http.ResponseWriter, r *http.Request, _ httprouter.Params) error {
		ifs, err := host.Interfaces()
		if err != nil {
			return err
		}
		out := make([]interfaceV2, len(ifs))
		for i, it := range ifs {
			out[i] = interfaceV2{ID: it.Name, IPAddress: it.IPAddress, MACAddress: it.MAC, Name: it.Name, Netmask: it.Netmask, Type: it.Type}
		}
		writeJSON(w, http.StatusOK, out)
		return nil
	})
	s.route("GET", "/v2/compute/network/ports", func(w http.ResponseWriter, r *http.Request, _ httprouter.Params) error {
		udp := s.cfg.Client.UDPPortRange()
		out := portsJSON{
			ConsolePortRange: [2]int{s.cfg.ConsolePorts.First, s.cfg.ConsolePorts.Last},
			ConsolePorts:     nonNil(s.cfg.ConsolePortsInUse()),
			UDPPortRange:     [2]int{udp.First, udp.Last},
			UDPPorts:         nonNil(s.cfg.Client.UDPPortsInUse()),
		}
		writeJSON(w, http.StatusOK, out)
		return nil
	})
	s.route("GET", "/v2/compute/statistics", func(w http.ResponseWriter, r *http.Request, _ httprouter.Params) error {
		mem, disk, err := s.hostUsage()
		if err != nil {
			return err
		}
		load, err := host.LoadAverage()
		if err != nil {
			return err
		}
		out := statisticsJSON{
			MemoryTotal:        mem.Total,
			MemoryFree:         mem.Available,
			MemoryUsed:         mem.Total - mem.Available,
			SwapTotal:          mem.SwapTotal,
			SwapFree:           mem.SwapFree,
			SwapUsed:           mem.SwapTotal - mem.SwapFree,
			CPUUsagePercent:    int(s.cpu.Percent()),
			MemoryUsagePercent: int(mem.UsedPercent()),
			SwapUsagePercent:   int(mem.SwapUsedPercent()),
			DiskUsagePercent:   int(disk.UsedPercent()),
		}
		for i, l := range load {
			out.LoadAveragePercent[i] = int(l / float64(runtime.NumCPU()) * 100)
		}
		writeJSON(w, http.StatusOK, out)
		return nil
	})
}

func nonNil(ports []int) []int {
	if ports == nil {
		return []int{}
	}
	return ports
}

// hostUsage reads the host's memory and the disk holding the projects.
func (s *Server) hostUsage() (host.Memory, host.Disk, error) {
	mem, err := host.ReadMemory()
	if err != nil {
		return host.Memory{}, host.Disk{}, err
	}
	disk, err := host.DiskUsage(s.cfg.Client.ProjectsDir())
	return mem, disk, err
}
