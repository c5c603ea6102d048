package nova

import (
	"encoding/json"
	"net/http"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/julienschmidt/httprouter"

	"labd/actors"
	"labd/actors/qemu"
	"labd/http/dialect"
	"labd/replay"
)

const timeFormat = "2006-01-02T15:04:05Z"

// microFormat is the time format of instance actions (no zone).
const microFormat = "2006-01-02T15:04:05.000000"

func (s *Server) routes() {
	if s.cfg.Root {
		s.router.GET("/", s.versions)
	}
	s.router.GET("/v2.1", s.version)
	s.router.GET("/v2.1/", s.version)
	// httprouter has no static segment beside a parameter: "detail"
	// is told from an id by the handlers.
	s.route("GET", "/flavors", s.listFlavors(false))
	s.route("GET", "/flavors/:id", orDetail(s.listFlavors(true), s.getFlavor))
	s.route("GET", "/images", s.listImages(false))
	s.route("GET", "/images/:id", orDetail(s.listImages(true), s.getImage))
	s.route("GET", "/servers", s.listServers(false))
	s.route("POST", "/servers", s.createServer)
	s.route("GET", "/servers/:id", orDetail(s.listServers(true), s.getServer))
	s.route("PUT", "/servers/:id", s.updateServer)
	s.route("DELETE", "/servers/:id", s.deleteServer)
	s.route("POST", "/servers/:id/action", s.action)
	s.route("POST", "/servers/:id/remote-consoles", s.remoteConsole)
	s.route("GET", "/servers/:id/os-instance-actions", s.listActions)
	s.route("GET", "/servers/:id/os-instance-actions/:request_id", s.getAction)
}

// orDetail serves .../detail with detail, and .../{id} with one.
func orDetail(detail, one func(http.ResponseWriter, *http.Request, *call) error) func(http.ResponseWriter, *http.Request, *call) error {
	return func(w http.ResponseWriter, r *http.Request, c *call) error {
		if c.params.ByName("id") == "detail" {
			return detail(w, r, c)
		}
		return one(w, r, c)
	}
}

func link(r *http.Request, path string) []map[string]string {
	return []map[string]string{{"rel": "self", "href": "http://" + r.Host + path}}
}

// versionDoc is Nova's document of the v2.1 API.
func versionDoc(r *http.Request) map[string]any {
	return map[string]any{
		"id": "v2.1", "status": "CURRENT", "version": MaxVersion, "min_version": MinVersion,
		"updated": "2013-07-23T11:33:21Z", "links": link(r, "/v2.1/"),
		"media-types": []map[string]string{{"base": "application/json", "type": "application/vnd.openstack.compute+json;version=2.1"}},
	}
}

func (s *Server) versions(w http.ResponseWriter, r *http.Request, _ httprouter.Params) {
	writeJSON(w, http.StatusOK, map[string]any{"versions": []any{versionDoc(r)}})
}

func (s *Server) version(w http.ResponseWriter, r *http.Request, _ httprouter.Params) {
	writeJSON(w, http.StatusOK, map[string]any{"version": versionDoc(r)})
}

// Servers.

// servers returns the project's servers: its nodes of kinds that run a
// process.
func (s *Server) servers(project string) []*replay.Node {
	return dialect.Machines(s.cfg.Client, project)
}

// server returns the server of the route's :id.
func (s *Server) server(c *call) (*replay.Node, error) {
	id := c.params.ByName("id")
	if n := dialect.Machine(s.cfg.Client, c.project, id); n != nil {
		return n, nil
	}
	return nil, faultf(http.StatusNotFound, "Instance %s could not be found.", id)
}

// vmState is a node's Nova vm_state.
func vmState(n *replay.Node) string {
	switch {
	case n.Resize != nil && n.Task == "":
		return "resized"
	case dialect.FirstStart(n):
		return "building"
	}
	switch n.Status {
	case replay.NodeRunning:
		return "active"
	case replay.NodePaused:
		return "paused"
	case replay.NodeSuspended:
		return "suspended"
	case replay.NodeError:
		return "error"
	}
	return "stopped"
}

// taskState is a node's Nova task_state, "" for none.
func taskState(n *replay.Node) string {
	if dialect.FirstStart(n) {
		return "spawning"
	}
	switch n.Task {
	case "":
		return ""
	case replay.TaskStarting:
		return "powering-on"
	case replay.TaskStopping:
		return "powering-off"
	case replay.TaskResizing:
		if op := n.InFlight(); op != nil && op.Op == string(actors.OpRevertResize) {
			return "resize_reverting"
		}
		return "resize_prep"
	}
	return n.Task // rebooting, rebooting_hard, pausing, ... are Nova's words too
}

// status is a node's Nova status, from its vm_state and task_state.
func status(n *replay.Node) string {
	switch taskState(n) {
	case "rebooting":
		return "REBOOT"
	case "rebooting_hard":
		return "HARD_REBOOT"
	case "resize_prep":
		return "RESIZE"
	case "resize_reverting":
		return "REVERT_RESIZE"
	}
	switch vmState(n) {
	case "active":
		return "ACTIVE"
	case "paused":
		return "PAUSED"
	case "suspended":
		return "SUSPENDED"
	case "error":
		return "ERROR"
	case "resized":
		return "VERIFY_RESIZE"
	case "building":
		return "BUILD"
	}
	return "SHUTOFF"
}

// powerState is Nova's power_state: 1 running, 3 paused, 4 shut down, 0
// none.
func powerState(n *replay.Node) int {
	switch n.Status {
	case replay.NodeRunning:
		return 1
	case replay.NodePaused:
		return 3
	case replay.NodeStopped, replay.NodeSuspended:
		return 4
	}
	return 0
}

// flavorOf is the flavor of a node: the table's of its size, or one named
// by the size.
func (s *Server) flavorOf(n *replay.Node) (Flavor, bool) {
	cpus, ram, ok := s.cfg.Client.Size(n)
	if !ok {
		return Flavor{}, false
	}
	for _, f := range s.cfg.Flavors {
		if f.VCPUs == cpus && f.RAM == ram {
			return f, true
		}
	}
	return Flavor{ID: "labd-" + itoa(cpus) + "c-" + itoa(ram) + "m", Name: "labd custom", VCPUs: cpus, RAM: ram}, true
}

func (s *Server) renderServer(r *http.Request, c *call, n *replay.Node) map[string]any {
	self := c.base + "/servers/" + n.ID
	var task any
	if t := taskState(n); t != "" {
		task = t
	}
	image := any("")
	if n.Kind == qemu.Kind {
		if name := qemu.Decode(n.Properties).Image("hda_disk_image"); name != "" {
			image = map[string]any{"id": dialect.ImageID(name), "links": link(r, c.base+"/images/"+dialect.ImageID(name))}
		}
	}
	flavor := map[string]any{}
	if f, ok := s.flavorOf(n); ok {
		flavor = map[string]any{"id": f.ID, "links": link(r, c.base+"/flavors/"+f.ID)}
	}
	metadata := n.Metadata
	if metadata == nil {
		metadata = map[string]string{}
	}
	return map[string]any{
		"id": n.ID, "name": n.Name, "status": status(n), "tenant_id": n.ProjectID, "user_id": "labd",
		"metadata": metadata, "hostId": "", "image": image, "flavor": flavor,
		"created": n.Created.UTC().Format(timeFormat), "updated": n.Updated.UTC().Format(timeFormat),
		"addresses": map[string]any{}, "accessIPv4": "", "accessIPv6": "", "links": link(r, self),
		"progress": 0, "key_name": nil, "config_drive": "",
		"security_groups":                      []map[string]string{{"name": "default"}},
		"OS-DCF:diskConfig":                    "MANUAL",
		"OS-EXT-AZ:availability_zone":          "nova",
		"OS-EXT-STS:vm_state":                  vmState(n),
		"OS-EXT-STS:task_state":                task,
		"OS-EXT-STS:power_state":               powerState(n),
		"os-extended-volumes:volumes_attached": []any{},
	}
}

func (s *Server) listServers(detail bool) func(http.ResponseWriter, *http.Request, *call) error {
	return func(w http.ResponseWriter, r *http.Request, c *call) error {
		out := []map[string]any{}
		for _, n := range s.servers(c.project) {
			if detail {
				out = append(out, s.renderServer(r, c, n))
				continue
			}
			out = append(out, map[string]any{"id": n.ID, "name": n.Name, "links": link(r, c.base+"/servers/"+n.ID)})
		}
		writeJSON(w, http.StatusOK, map[string]any{"servers": out})
		return nil
	}
}

func (s *Server) getServer(w http.ResponseWriter, r *http.Request, c *call) error {
	n, err := s.server(c)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, map[string]any{"server": s.renderServer(r, c, n)})
	return nil
}

// createRequest is POST /servers.
type createRequest struct {
	Server *struct {
		Name       string            `json:"name"`
		ImageRef   string            `json:"imageRef"`
		FlavorRef  string            `json:"flavorRef"`
		Metadata   map[string]string `json:"metadata"`
		Networks   json.RawMessage   `json:"networks"`
		DiskConfig string            `json:"OS-DCF:diskConfig"`
		MinCount   *int              `json:"min_count"`
		MaxCount   *int              `json:"max_count"`
	} `json:"server"`
}

func (s *Server) createServer(w http.ResponseWriter, r *http.Request, c *call) error {
	var req createRequest
	if err := decode(r, &req); err != nil {
		return err
	}
	sv := req.Server
	switch {
	case sv == nil:
		return faultf(http.StatusBadRequest, "Invalid input for field/attribute server: 'server' is a required property")
	case sv.Name == "" || len(sv.Name) > 255:
		return faultf(http.StatusBadRequest, "Invalid input for field/attribute name: the name must have 1 to 255 characters")
	case sv.MinCount != nil && *sv.MinCount != 1, sv.MaxCount != nil && *sv.MaxCount != 1:
		return faultf(http.StatusBadRequest, "labd creates one server per request: min_count and max_count must be 1")
	case len(sv.Metadata) > 128:
		return faultf(http.StatusForbidden, "Quota exceeded for metadata_items: at most 128 items")
	}
	if err := checkNetworks(sv.Networks); err != nil {
		return err
	}
	flavor, ok := s.flavor(sv.FlavorRef)
	if !ok {
		return faultf(http.StatusBadRequest, "Flavor %s could not be found.", sv.FlavorRef)
	}
	image, ok := s.image(sv.ImageRef)
	if !ok {
		return faultf(http.StatusBadRequest, "Can not find requested image")
	}
	if err := s.ensureProject(r, c); err != nil {
		return err
	}
	linked := true
	ref := actors.NodeRef{ProjectID: c.project, NodeID: uuid.NewString()}
	n, err := s.cfg.Client.CreateNode(r.Context(), actors.CreateNode{
		NodeRef: ref, Kind: qemu.Kind, Name: sv.Name, ConsoleType: actors.ConsoleVNC, SecureConsole: true,
		Metadata: sv.Metadata,
		Props:    &qemu.Patch{HDADiskImage: &image, LinkedClone: &linked, RAM: &flavor.RAM, CPUs: &flavor.VCPUs},
	})
	if err != nil {
		return err
	}
	if _, err := s.cfg.Client.Operate(r.Context(), actors.Operate{NodeRef: ref, Op: actors.OpStart, RequestID: c.info.id}); err != nil {
		return err
	}
	self := c.base + "/servers/" + n.ID
	w.Header().Set("Location", "http://"+r.Host+self)
	writeJSON(w, http.StatusAccepted, map[string]any{"server": map[string]any{
		"id": n.ID, "links": link(r, self), "OS-DCF:diskConfig": "MANUAL",
		"security_groups": []map[string]string{{"name": "default"}},
	}})
	return nil
}

// checkNetworks takes what labd can give a server: no network ("none",
// or "auto", which finds none here).
func checkNetworks(raw json.RawMessage) error {
	if len(raw) == 0 {
		return nil
	}
	var v string
	if err := json.Unmarshal(raw, &v); err != nil || (v != "none" && v != "auto") {
		return faultf(http.StatusBadRequest, `Invalid input for field/attribute networks: labd servers have no network ("none"); link them through GNS3`)
	}
	return nil
}

// ensureProject creates the default project of /v2.1/ when it is missing.
func (s *Server) ensureProject(r *http.Request, c *call) error {
	if _, err := s.cfg.Client.Project(c.project); err == nil {
		return nil
	}
	if c.project != s.defaultProject {
		return faultf(http.StatusNotFound, "Project %s could not be found.", c.project)
	}
	_, _, err := s.cfg.Client.CreateProject(r.Context(), actors.CreateProject{ProjectID: c.project, Name: "nova", Mode: actors.CreateOrGet})
	return err
}

func (s *Server) updateServer(w http.ResponseWriter, r *http.Request, c *call) error {
	var req struct {
		Server *struct {
			Name *string `json:"name"`
		} `json:"server"`
	}
	if err := decode(r, &req); err != nil {
		return err
	}
	if req.Server == nil {
		return faultf(http.StatusBadRequest, "Invalid input for field/attribute server: 'server' is a required property")
	}
	n, err := s.server(c)
	if err != nil {
		return err
	}
	if req.Server.Name != nil {
		out, err := s.cfg.Client.Operate(r.Context(), actors.Operate{NodeRef: ref(n), Op: actors.OpRename, Name: *req.Server.Name, RequestID: c.info.id})
		if err != nil {
			return err
		}
		n = out.Node
	}
	writeJSON(w, http.StatusOK, map[string]any{"server": s.renderServer(r, c, n)})
	return nil
}

func (s *Server) deleteServer(w http.ResponseWriter, r *http.Request, c *call) error {
	n, err := s.server(c)
	if err != nil {
		return err
	}
	if _, err := s.cfg.Client.Operate(r.Context(), actors.Operate{NodeRef: ref(n), Op: actors.OpDelete, RequestID: c.info.id, Wait: true}); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func ref(n *replay.Node) actors.NodeRef {
	return actors.NodeRef{ProjectID: n.ProjectID, NodeID: n.ID}
}

// Remote consoles.

// consoleURL is the URL of a server's VNC console.
func (s *Server) consoleURL(r *http.Request, n *replay.Node) (string, error) {
	con, err := s.cfg.Client.Console(n.ProjectID, n.ID)
	if err != nil {
		return "", faultf(http.StatusConflict, "Instance %s is not ready: %s", n.ID, strings.TrimSuffix(errorMessage(err), "."))
	}
	if con.Type != actors.ConsoleVNC {
		return "", faultf(http.StatusBadRequest, "Unavailable console type vnc: the server's console is %s", con.Type)
	}
	host := con.Host
	if host == "" || host == "0.0.0.0" || host == "::" {
		host, _, _ = strings.Cut(r.Host, ":")
	}
	url := "vnc://" + host + ":" + itoa(con.Port)
	if con.Password != "" {
		url += "?VncPassword=" + con.Password
	}
	return url, nil
}

func errorMessage(err error) string {
	if msg, ok := actors.PublicMessage(err); ok {
		return msg
	}
	return "not available"
}

func (s *Server) remoteConsole(w http.ResponseWriter, r *http.Request, c *call) error {
	if c.info.minor < 6 {
		return faultf(http.StatusNotFound, "The resource could not be found.")
	}
	var req struct {
		RemoteConsole *struct {
			Protocol string `json:"protocol"`
			Type     string `json:"type"`
		} `json:"remote_console"`
	}
	if err := decode(r, &req); err != nil {
		return err
	}
	rc := req.RemoteConsole
	switch {
	case rc == nil:
		return faultf(http.StatusBadRequest, "Invalid input for field/attribute remote_console: 'remote_console' is a required property")
	case rc.Protocol != "vnc":
		return faultf(http.StatusBadRequest, "Unavailable console type %s.", rc.Protocol)
	case rc.Type != "novnc" && rc.Type != "xvpvnc":
		return faultf(http.StatusBadRequest, "Invalid input for field/attribute type: %q is not one of novnc, xvpvnc", rc.Type)
	}
	n, err := s.server(c)
	if err != nil {
		return err
	}
	url, err := s.consoleURL(r, n)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, map[string]any{"remote_console": map[string]string{"protocol": rc.Protocol, "type": rc.Type, "url": url}})
	return nil
}

// Instance actions.

// novaAction is Nova's name of a lifecycle operation.
func novaAction(op string) string {
	switch actors.Op(op) {
	case actors.OpConfirmResize:
		return "confirmResize"
	case actors.OpRevertResize:
		return "revertResize"
	case actors.OpReload:
		return "reboot"
	case actors.OpRename:
		return "update"
	}
	return op
}

func requestID(op replay.Operation) string {
	if op.RequestID != "" {
		return op.RequestID
	}
	return "req-" + op.ID
}

func renderAction(n *replay.Node, op replay.Operation) map[string]any {
	var msg any
	if op.State == "FAILURE" {
		msg = "Error"
	}
	return map[string]any{
		"action": novaAction(op.Op), "instance_uuid": n.ID, "request_id": requestID(op), "user_id": "labd",
		"project_id": n.ProjectID, "start_time": op.Started.UTC().Format(microFormat), "message": msg,
	}
}

func (s *Server) listActions(w http.ResponseWriter, r *http.Request, c *call) error {
	n, err := s.server(c)
	if err != nil {
		return err
	}
	out := []map[string]any{}
	for i := len(n.Operations) - 1; i >= 0; i-- { // newest first, as Nova
		out = append(out, renderAction(n, n.Operations[i]))
	}
	writeJSON(w, http.StatusOK, map[string]any{"instanceActions": out})
	return nil
}

func (s *Server) getAction(w http.ResponseWriter, r *http.Request, c *call) error {
	n, err := s.server(c)
	if err != nil {
		return err
	}
	id := c.params.ByName("request_id")
	op, ok := n.Operation(strings.TrimPrefix(id, "req-"))
	if !ok {
		if op, ok = n.Operation(id); !ok {
			return faultf(http.StatusNotFound, "Action for request_id %s on instance %s not found", id, n.ID)
		}
	}
	out := renderAction(n, op)
	ev := map[string]any{"event": "compute_" + strings.ReplaceAll(op.Op, "-", "_") + "_instance",
		"start_time": op.Started.UTC().Format(microFormat), "finish_time": nil, "result": nil, "traceback": nil}
	if !op.Ended.IsZero() {
		ev["finish_time"] = op.Ended.UTC().Format(microFormat)
		ev["result"] = "Success"
		if op.State != "SUCCESS" {
			ev["result"], ev["traceback"] = "Error", op.Error+op.Message
		}
	}
	out["events"] = []any{ev}
	writeJSON(w, http.StatusOK, map[string]any{"instanceAction": out})
	return nil
}

// Flavors and images.

func (s *Server) flavor(ref string) (Flavor, bool) {
	ref = strings.TrimSuffix(ref[strings.LastIndex(ref, "/")+1:], "/")
	for _, f := range s.cfg.Flavors {
		if f.ID == ref {
			return f, true
		}
	}
	return Flavor{}, false
}

func (s *Server) renderFlavor(r *http.Request, c *call, f Flavor, detail bool) map[string]any {
	out := map[string]any{"id": f.ID, "name": f.Name, "links": link(r, c.base+"/flavors/"+f.ID)}
	if detail {
		out["ram"], out["vcpus"], out["disk"] = f.RAM, f.VCPUs, f.Disk
		out["swap"], out["rxtx_factor"], out["OS-FLV-EXT-DATA:ephemeral"] = "", 1.0, 0
		out["os-flavor-access:is_public"], out["OS-FLV-DISABLED:disabled"] = true, false
	}
	return out
}

func (s *Server) listFlavors(detail bool) func(http.ResponseWriter, *http.Request, *call) error {
	return func(w http.ResponseWriter, r *http.Request, c *call) error {
		out := []map[string]any{}
		for _, f := range s.cfg.Flavors {
			out = append(out, s.renderFlavor(r, c, f, detail))
		}
		writeJSON(w, http.StatusOK, map[string]any{"flavors": out})
		return nil
	}
}

func (s *Server) getFlavor(w http.ResponseWriter, r *http.Request, c *call) error {
	f, ok := s.flavor(c.params.ByName("id"))
	if !ok {
		return faultf(http.StatusNotFound, "Flavor %s could not be found.", c.params.ByName("id"))
	}
	writeJSON(w, http.StatusOK, map[string]any{"flavor": s.renderFlavor(r, c, f, true)})
	return nil
}

// image resolves an imageRef (an image id, its URL, or the image's name)
// to the store's name.
func (s *Server) image(ref string) (string, bool) {
	images, err := s.cfg.Images.List()
	if err != nil || ref == "" {
		return "", false
	}
	id := ref[strings.LastIndex(ref, "/")+1:]
	for _, im := range images {
		if im.Filename == ref || dialect.ImageID(im.Filename) == id {
			return im.Filename, true
		}
	}
	return "", false
}

func (s *Server) renderImage(r *http.Request, c *call, im qemu.ImageInfo, detail bool) map[string]any {
	id := dialect.ImageID(im.Filename)
	out := map[string]any{"id": id, "name": im.Filename, "links": link(r, c.base+"/images/"+id)}
	if detail {
		out["status"], out["progress"], out["minDisk"], out["minRam"] = "ACTIVE", 100, 0, 0
		out["OS-EXT-IMG-SIZE:size"], out["metadata"] = im.FileSize, map[string]string{"md5sum": im.MD5Sum}
		out["created"], out["updated"] = time.Unix(0, 0).UTC().Format(timeFormat), time.Unix(0, 0).UTC().Format(timeFormat)
	}
	return out
}

func (s *Server) listImages(detail bool) func(http.ResponseWriter, *http.Request, *call) error {
	return func(w http.ResponseWriter, r *http.Request, c *call) error {
		images, err := s.cfg.Images.List()
		if err != nil {
			return err
		}
		out := []map[string]any{}
		for _, im := range images {
			out = append(out, s.renderImage(r, c, im, detail))
		}
		writeJSON(w, http.StatusOK, map[string]any{"images": out})
		return nil
	}
}

func (s *Server) getImage(w http.ResponseWriter, r *http.Request, c *call) error {
	images, err := s.cfg.Images.List()
	if err != nil {
		return err
	}
	for _, im := range images {
		if dialect.ImageID(im.Filename) == c.params.ByName("id") {
			writeJSON(w, http.StatusOK, map[string]any{"image": s.renderImage(r, c, im, true)})
			return nil
		}
	}
	return faultf(http.StatusNotFound, "Image not found.")
}
