package e24

import (
	"encoding/json"
	"errors"
	"math"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"

	"labd/actors"
	"labd/actors/qemu"
	"labd/http/dialect"
	"labd/replay"
)

// The sizes a create or a resize may ask for: QEMU's CPUs, and memory
// from 32 MB (Nova's smallest flavor table entry) to QEMU's limit.
const (
	minCPUs, maxCPUs = 1, 255
	minRAM, maxRAM   = 32, 1 << 20
	// maxWaitFor bounds wait_for, in minutes (a day).
	maxWaitFor = 24 * 60
)

func (s *Server) routes() {
	s.route("GET", Prefix, s.listVMs)
	s.route("PUT", Prefix, s.createVM)
	s.route("GET", Prefix+"/:id", s.getVM)
	s.route("DELETE", Prefix+"/:id", s.deleteVM)
	s.route("POST", Prefix+"/:id/:action", s.action)
}

// Machines.

// vms returns the project's machines: its nodes of kinds that run a
// process.
func (s *Server) vms(project string) []*replay.Node {
	return dialect.Machines(s.cfg.Client, project)
}

// vm returns the machine of the route's :id.
func (s *Server) vm(c *call) (*replay.Node, error) {
	id := c.params.ByName("id")
	if n := dialect.Machine(s.cfg.Client, c.project, id); n != nil {
		return n, nil
	}
	return nil, errorf(http.StatusNotFound, "Virtual machine %s not found", id)
}

// state is a node's e24cloud state (see the package doc).
func state(n *replay.Node) string {
	if op := n.InFlight(); op != nil && op.Op == string(actors.OpDelete) {
		return "deleting"
	}
	if dialect.FirstStart(n) {
		return "installing"
	}
	if n.Status == replay.NodeRunning || n.Task == replay.TaskRebooting || n.Task == replay.TaskRebootingHard {
		return "online"
	}
	return "offline"
}

// volumeID is the id of a node's disk.
func volumeID(node, disk string) string {
	return uuid.NewSHA1(uuid.NameSpaceOID, []byte("labd-e24-volume:"+node+":"+disk)).String()
}

// sizeGB is the size of a store image in GB (GiB), rounded up; 0 when it
// cannot be read.
func (s *Server) sizeGB(name string) int64 {
	p, err := s.cfg.Images.Resolve(name, "")
	if err != nil || p == "" {
		return 0
	}
	st, err := os.Stat(p)
	if err != nil {
		return 0
	}
	return (st.Size() + 1<<30 - 1) >> 30
}

// owner is a project as e24cloud shows an owner.
type owner struct {
	ID   string `json:"id"`
	Name string `json:"name"`
}

func (s *Server) owner(project string) owner {
	o := owner{ID: project}
	if p, err := s.cfg.Client.Project(project); err == nil {
		o.Name = p.Name
	}
	return o
}

func (s *Server) render(n *replay.Node, o owner) map[string]any {
	cores, ram, _ := s.cfg.Client.Size(n)
	system := map[string]string{"id": "", "name": ""}
	volumes := []map[string]any{}
	if n.Kind == qemu.Kind {
		cfg := qemu.Decode(n.Properties)
		if name := cfg.Image("hda_disk_image"); name != "" {
			system = map[string]string{"id": dialect.ImageID(name), "name": name}
			volumes = append(volumes, map[string]any{"id": volumeID(n.ID, "hda"), "size": s.sizeGB(name), "system_disk": true})
		} else if name := cfg.Image("cdrom_image"); name != "" {
			system = map[string]string{"id": dialect.ImageID(name), "name": name}
		}
	}
	return map[string]any{
		"id": n.ID, "label": n.Name, "cores": cores, "ram": ram, "adm": true,
		"system": system, "cost_per_hour": 0, "state": state(n), "transfer_used": 0, "owner": o,
		"public_interface": map[string]any{"primary_ip_ipv4address": "", "ipv4_addresses": []any{}},
		"storage_volumes":  volumes,
		"zone":             map[string]string{"id": s.zone, "name": s.cfg.ComputeID},
		"networks":         []any{},
		"groups":           []any{},
	}
}

func (s *Server) listVMs(w http.ResponseWriter, r *http.Request, c *call) error {
	o := s.owner(c.project)
	out := []map[string]any{}
	for _, n := range s.vms(c.project) {
		out = append(out, s.render(n, o))
	}
	ok(w, map[string]any{"virtual_machines": out})
	return nil
}

func (s *Server) getVM(w http.ResponseWriter, r *http.Request, c *call) error {
	n, err := s.vm(c)
	if err != nil {
		return err
	}
	ok(w, map[string]any{"virtual_machine": s.render(n, s.owner(c.project))})
	return nil
}

// flexID is an id e24cloud's clients send as a JSON string or integer.
type flexID string

func (f *flexID) UnmarshalJSON(b []byte) error {
	switch {
	case string(b) == "null":
		*f = ""
		return nil
	case len(b) > 0 && b[0] == '"':
		var v string
		if err := json.Unmarshal(b, &v); err != nil {
			return err
		}
		*f = flexID(v)
		return nil
	}
	if _, err := strconv.ParseInt(string(b), 10, 64); err != nil {
		return errors.New("an id must be a string or an integer")
	}
	*f = flexID(b)
	return nil
}

// createRequest is PUT /v2/virtual-machines.
type createRequest struct {
	CreateVM *struct {
		CPUs          *int   `json:"cpus"`
		RAM           *int   `json:"ram"`
		Name          string `json:"name"`
		BootType      string `json:"boot_type"`
		OS            flexID `json:"os"`
		CDROM         string `json:"cdrom"`
		Password      string `json:"password"`
		KeyID         flexID `json:"key_id"`
		UserData      string `json:"user_data"`
		ComputeZoneID string `json:"compute_zone_id"`
		ZoneID        string `json:"zone_id"`
	} `json:"create_vm"`
}

func checkSize(what string, v, lo, hi int) error {
	if v < lo || v > hi {
		return errorf(http.StatusBadRequest, "%s %d is out of range %d..%d", what, v, lo, hi)
	}
	return nil
}

func (s *Server) createVM(w http.ResponseWriter, r *http.Request, c *call) error {
	var req createRequest
	if err := decode(c.body, &req); err != nil {
		return err
	}
	vm := req.CreateVM
	switch {
	case vm == nil:
		return errorf(http.StatusBadRequest, "Invalid request body: create_vm is required")
	case vm.CPUs == nil:
		return errorf(http.StatusBadRequest, "Invalid request body: cpus is required")
	case vm.RAM == nil:
		return errorf(http.StatusBadRequest, "Invalid request body: ram is required")
	case vm.Name == "" || len(vm.Name) > 255:
		return errorf(http.StatusBadRequest, "Invalid request body: the name must have 1 to 255 characters")
	}
	if err := checkSize("cpus", *vm.CPUs, minCPUs, maxCPUs); err != nil {
		return err
	}
	if err := checkSize("ram", *vm.RAM, minRAM, maxRAM); err != nil {
		return err
	}
	if err := s.checkZone(vm.ComputeZoneID, vm.ZoneID); err != nil {
		return err
	}
	linked := true
	patch := &qemu.Patch{LinkedClone: &linked, RAM: vm.RAM, CPUs: vm.CPUs}
	switch vm.BootType {
	case "", "image":
		if vm.OS == "" {
			return errorf(http.StatusBadRequest, "Invalid request body: os is required for boot_type image")
		}
	case "cdrom":
		if vm.CDROM == "" {
			return errorf(http.StatusBadRequest, "Invalid request body: cdrom is required for boot_type cdrom")
		}
		boot := "d"
		patch.BootPriority = &boot
	default:
		return errorf(http.StatusBadRequest, "Invalid request body: boot_type %q is not image or cdrom", vm.BootType)
	}
	if vm.OS != "" {
		image, found := s.image(string(vm.OS))
		if !found {
			return errorf(http.StatusBadRequest, "The system image %s does not exist", vm.OS)
		}
		patch.HDADiskImage = &image
	}
	if vm.CDROM != "" {
		iso, found := s.image(vm.CDROM)
		if !found {
			return errorf(http.StatusBadRequest, "The ISO image %s does not exist", vm.CDROM)
		}
		patch.CDROMImage = &iso
	}
	// password, key_id and user_data go nowhere (see the package doc).
	if err := s.ensureProject(r.Context(), c); err != nil {
		return err
	}
	ref := actors.NodeRef{ProjectID: c.project, NodeID: uuid.NewString()}
	n, err := s.cfg.Client.CreateNode(r.Context(), actors.CreateNode{
		NodeRef: ref, Kind: qemu.Kind, Name: vm.Name, ConsoleType: actors.ConsoleVNC, SecureConsole: true, Props: patch,
	})
	if err != nil {
		return err
	}
	if _, err := s.cfg.Client.Operate(r.Context(), actors.Operate{NodeRef: ref, Op: actors.OpStart, RequestID: c.id}); err != nil {
		return err
	}
	ok(w, map[string]any{"virtual_machine": map[string]string{"id": n.ID}})
	return nil
}

// checkZone takes no zone, the compute's zone id, or the compute id.
func (s *Server) checkZone(ids ...string) error {
	for _, id := range ids {
		if id != "" && !strings.EqualFold(id, s.zone) && id != s.cfg.ComputeID {
			return errorf(http.StatusBadRequest, "The compute zone %s does not exist: this compute's zone is %s", id, s.zone)
		}
	}
	return nil
}

// image resolves a store image by its name or its id.
func (s *Server) image(ref string) (string, bool) {
	images, err := s.cfg.Images.List()
	if err != nil || ref == "" {
		return "", false
	}
	for _, im := range images {
		if im.Filename == ref || dialect.ImageID(im.Filename) == strings.ToLower(ref) {
			return im.Filename, true
		}
	}
	return "", false
}

func (s *Server) deleteVM(w http.ResponseWriter, r *http.Request, c *call) error {
	var req struct {
		DeleteResources json.RawMessage `json:"deleteResources"`
	}
	if err := decode(c.body, &req); err != nil {
		return err
	}
	switch string(req.DeleteResources) {
	case "", "null", "0", "1", "true", "false":
	default:
		return errorf(http.StatusBadRequest, "Invalid request body: deleteResources must be 0 or 1")
	}
	n, err := s.vm(c)
	if err != nil {
		return err
	}
	if _, err := s.cfg.Client.Operate(r.Context(), actors.Operate{NodeRef: ref(n), Op: actors.OpDelete, RequestID: c.id, Wait: true}); err != nil {
		return refused(err, "delete", n)
	}
	ok(w, nil)
	return nil
}

func ref(n *replay.Node) actors.NodeRef {
	return actors.NodeRef{ProjectID: n.ProjectID, NodeID: n.ID}
}

// Actions.

// waitFor is wait_for: minutes, maybe fractional.
type waitFor struct {
	WaitFor *float64 `json:"wait_for"`
}

// timeout reads wait_for: def when absent; force when it is 0 (or too
// small to wait at all).
func (a waitFor) timeout(def time.Duration) (d time.Duration, force bool, err error) {
	if a.WaitFor == nil {
		return def, false, nil
	}
	v := *a.WaitFor
	if math.IsNaN(v) || v < 0 || v > maxWaitFor {
		return 0, false, errorf(http.StatusBadRequest, "Invalid request body: wait_for %v is out of range 0..%d minutes", v, maxWaitFor)
	}
	d = time.Duration(v * float64(time.Minute)).Round(time.Millisecond)
	return d, d <= 0, nil
}

func (s *Server) action(w http.ResponseWriter, r *http.Request, c *call) error {
	name := c.params.ByName("action")
	op := actors.Operate{RequestID: c.id}
	var args any
	var wf waitFor
	var resize struct {
		Cores   *int     `json:"cores"`
		RAM     *int     `json:"ram"`
		WaitFor *float64 `json:"wait_for"`
	}
	var rename struct {
		Name *string `json:"name"`
	}
	switch name {
	case "poweron":
		op.Op = actors.OpStart
	case "poweroff", "shutdown":
		op.Op, args = actors.OpStop, &wf
	case "reboot":
		op.Op, op.Timeout = actors.OpReboot, s.cfg.ShutdownTimeout
	case "reset":
		op.Op, op.Force = actors.OpReboot, true
	case "resize":
		op.Op, op.Confirm, args = actors.OpResize, true, &resize
	case "rename":
		op.Op, args = actors.OpRename, &rename
	case "console":
	default:
		return errorf(http.StatusNotFound, "There is no such call: POST %s", r.URL.Path)
	}
	if args == nil {
		args = &struct{}{}
	}
	if err := decode(c.body, args); err != nil {
		return err
	}
	switch name {
	case "poweroff":
		t, force, err := wf.timeout(0)
		if err != nil {
			return err
		}
		op.Timeout, op.Force = t, force || wf.WaitFor == nil
	case "shutdown":
		t, force, err := wf.timeout(s.cfg.ShutdownTimeout)
		if err != nil {
			return err
		}
		op.Timeout, op.Force = t, force
	case "resize":
		if resize.Cores == nil && resize.RAM == nil {
			return errorf(http.StatusBadRequest, "Invalid request body: give cores, ram or both")
		}
		if resize.Cores != nil {
			if err := checkSize("cores", *resize.Cores, minCPUs, maxCPUs); err != nil {
				return err
			}
		}
		if resize.RAM != nil {
			if err := checkSize("ram", *resize.RAM, minRAM, maxRAM); err != nil {
				return err
			}
		}
		t, force, err := waitFor{resize.WaitFor}.timeout(s.cfg.ShutdownTimeout)
		if err != nil {
			return err
		}
		op.Timeout, op.Force = t, force
	case "rename":
		if rename.Name == nil || *rename.Name == "" || len(*rename.Name) > 255 {
			return errorf(http.StatusBadRequest, "Invalid request body: the name must have 1 to 255 characters")
		}
		op.Name = *rename.Name
	}
	n, err := s.vm(c)
	if err != nil {
		return err
	}
	if name == "console" {
		return s.console(w, r, n)
	}
	if name == "resize" {
		cpus, ram, sized := s.cfg.Client.Size(n)
		if !sized {
			return errorf(http.StatusConflict, "Virtual machine %s cannot be resized", n.ID)
		}
		op.CPUs, op.RAMMB = cpus, ram
		if resize.Cores != nil {
			op.CPUs = *resize.Cores
		}
		if resize.RAM != nil {
			op.RAMMB = *resize.RAM
		}
	}
	op.NodeRef = ref(n)
	if _, err := s.cfg.Client.Operate(r.Context(), op); err != nil {
		return refused(err, name, n)
	}
	ok(w, nil)
	return nil
}

// refused words the core's refusal of a call for the machine's state.
func refused(err error, call string, n *replay.Node) error {
	se, isState := errors.AsType[*actors.StateError](err)
	if !isState {
		return err
	}
	if se.Busy {
		task := se.Task
		if task == "" && se.InFlight != nil {
			task = se.InFlight.Task
		}
		return errorf(http.StatusConflict, "Cannot %s virtual machine %s: a task is in progress (%s)", call, n.ID, task)
	}
	if se.Frozen {
		return errorf(http.StatusConflict, "Cannot %s virtual machine %s: it is frozen", call, n.ID)
	}
	return errorf(http.StatusConflict, "Cannot %s virtual machine %s while it is %s", call, n.ID, state(n))
}

func (s *Server) console(w http.ResponseWriter, r *http.Request, n *replay.Node) error {
	con, err := s.cfg.Client.Console(n.ProjectID, n.ID)
	if err != nil {
		msg := "not available"
		if m, public := actors.PublicMessage(err); public {
			msg = strings.TrimSuffix(m, ".")
		}
		return errorf(http.StatusConflict, "The console of virtual machine %s is not available: %s", n.ID, msg)
	}
	if con.Type != actors.ConsoleVNC {
		return errorf(http.StatusConflict, "Virtual machine %s has a %s console, not VNC", n.ID, con.Type)
	}
	host := con.Host
	if host == "" || host == "0.0.0.0" || host == "::" {
		host = requestHost(r.Host)
	}
	ok(w, map[string]any{"console": map[string]any{"host": host, "port": con.Port, "password": con.Password}})
	return nil
}

// requestHost is a Host header without its port.
func requestHost(hostport string) string {
	if strings.HasPrefix(hostport, "[") {
		if i := strings.IndexByte(hostport, ']'); i > 0 {
			return hostport[1:i]
		}
	}
	if i := strings.LastIndexByte(hostport, ':'); i >= 0 && strings.Count(hostport, ":") == 1 {
		return hostport[:i]
	}
	return hostport
}
