package api

import (
	"net/http"
	"path/filepath"

	"github.com/google/uuid"
	"github.com/julienschmidt/httprouter"

	"labd/actors"
	"labd/events"
	"labd/replay"
)

// projectV1 is a project as GNS3 1.5 shows it.
type projectV1 struct {
	Location  string  `json:"location"`
	Name      *string `json:"name"`
	Path      string  `json:"path"`
	ProjectID string  `json:"project_id"`
	Temporary bool    `json:"temporary"`
}

// projectV2 is a project as the GNS3 2.2 compute shows it: exactly these
// three members.
type projectV2 struct {
	Name      *string        `json:"name"`
	ProjectID string         `json:"project_id"`
	Variables []variableJSON `json:"variables"`
}

// variableJSON is one project variable: {"name", "value"}.
type variableJSON struct {
	Name  string  `json:"name"`
	Value *string `json:"value,omitempty"`
}

// nameOf renders a project name: labd stores a null name as "", which a
// client cannot send (names have at least one character).
func nameOf(p *replay.Project) *string {
	if p.Name == "" {
		return nil
	}
	return &p.Name
}

func (s *Server) v1Project(p *replay.Project) projectV1 {
	return projectV1{
		Location:  s.cfg.Client.ProjectsDir(),
		Name:      nameOf(p),
		Path:      s.cfg.Client.ProjectDir(p.ID),
		ProjectID: p.ID,
		Temporary: p.Temporary,
	}
}

func v2Project(p *replay.Project) projectV2 {
	out := projectV2{Name: nameOf(p), ProjectID: p.ID}
	if p.Variables != nil {
		out.Variables = make([]variableJSON, len(p.Variables))
		for i, v := range p.Variables {
			out.Variables[i] = variableJSON(v)
		}
	}
	return out
}

// projectIDParam parses the {project_id} of a route.
func projectIDParam(p httprouter.Params) (string, error) {
	return parseID("Project", p.ByName("project_id"))
}

// projectCreateV1 is the body of POST /v1/projects.
type projectCreateV1 struct {
	Name      nullable[string] `json:"name"`
	ProjectID nullable[string] `json:"project_id"`
	Path      nullable[string] `json:"path"`
	Temporary nullable[bool]   `json:"temporary"`
}

// projectCreateV2 is the body of POST /v2/compute/projects: the whole
// PROJECT_CREATE_SCHEMA of GNS3 2.2. The compute uses name, project_id,
// path and variables; the rest is the controller's business, checked for
// type and ignored, as GNS3 does.
type projectCreateV2 struct {
	Name      nullable[string] `json:"name"`
	ProjectID nullable[string] `json:"project_id"`
	projectSettingsV2
}

// projectSettingsV2 are the members PROJECT_CREATE_SCHEMA and
// PROJECT_UPDATE_SCHEMA share.
type projectSettingsV2 struct {
	Path                nullable[string]         `json:"path"`
	Variables           nullable[[]variableJSON] `json:"variables"`
	AutoClose           field[bool]              `json:"auto_close"`
	AutoOpen            field[bool]              `json:"auto_open"`
	AutoStart           field[bool]              `json:"auto_start"`
	ShowLayers          field[bool]              `json:"show_layers"`
	SnapToGrid          field[bool]              `json:"snap_to_grid"`
	ShowGrid            field[bool]              `json:"show_grid"`
	ShowInterfaceLabels field[bool]              `json:"show_interface_labels"`
	SceneHeight         field[int]               `json:"scene_height"`
	SceneWidth          field[int]               `json:"scene_width"`
	Zoom                field[int]               `json:"zoom"`
	GridSize            field[int]               `json:"grid_size"`
	DrawingGridSize     field[int]               `json:"drawing_grid_size"`
	Supplier            nullable[supplierJSON]   `json:"supplier"`
}

type supplierJSON struct {
	Logo string `json:"logo"`
	URL  string `json:"url"`
}

// projectUpdateV1 is the body of PUT /v1/projects/{project_id}.
type projectUpdateV1 struct {
	Name      nullable[string] `json:"name"`
	Path      nullable[string] `json:"path"`
	Temporary nullable[bool]   `json:"temporary"`
}

// checkName applies the schemas' minLength 1.
func checkName(n nullable[string]) (string, error) {
	if n.Set && !n.Null && n.Value == "" {
		return "", newHTTPError(http.StatusBadRequest, "Invalid JSON: field \"name\" must not be empty")
	}
	return n.Value, nil
}

// checkVariables applies the schema of "variables" (each name at least one
// character) and converts them.
func checkVariables(n nullable[[]variableJSON]) ([]events.Variable, error) {
	if !n.Set || n.Null {
		return nil, nil
	}
	vars := make([]events.Variable, len(n.Value))
	for i, v := range n.Value {
		if v.Name == "" {
			return nil, newHTTPError(http.StatusBadRequest, "Invalid JSON: variables[%d] needs a non-empty \"name\"", i)
		}
		vars[i] = events.Variable(v)
	}
	return vars, nil
}

// newProjectID returns the id a create asks for, or a fresh one.
func newProjectID(n nullable[string]) (string, error) {
	if !n.Set || n.Null {
		return uuid.NewString(), nil
	}
	return parseID("Project", n.Value)
}

// createCommand checks what both API versions' creates share: the name,
// the id (a fresh one if none is given) and the path, which may only be
// the project's own directory: labd keeps every project under its data
// directory.
func (s *Server) createCommand(name, projectID, path nullable[string]) (actors.CreateProject, error) {
	n, err := checkName(name)
	if err != nil {
		return actors.CreateProject{}, err
	}
	id, err := newProjectID(projectID)
	if err != nil {
		return actors.CreateProject{}, err
	}
	if path.Set && !path.Null && filepath.Clean(path.Value) != s.cfg.Client.ProjectDir(id) {
		return actors.CreateProject{}, actors.Forbidden("The path %s is not allowed", path.Value)
	}
	return actors.CreateProject{ProjectID: id, Name: n}, nil
}

func (s *Server) projectRoutes() {
	s.route("GET", "/v1/projects", func(w http.ResponseWriter, r *http.Request, _ httprouter.Params) error {
		out := []projectV1{}
		for _, p := range s.cfg.Client.Projects() {
			out = append(out, s.v1Project(p))
		}
		writeJSON(w, http.StatusOK, out)
		return nil
	})
	s.route("GET", "/v2/compute/projects", func(w http.ResponseWriter, r *http.Request, _ httprouter.Params) error {
		out := []projectV2{}
		for _, p := range s.cfg.Client.Projects() {
			out = append(out, v2Project(p))
		}
		writeJSON(w, http.StatusOK, out)
		return nil
	})

	s.route("POST", "/v1/projects", func(w http.ResponseWriter, r *http.Request, _ httprouter.Params) error {
		var body projectCreateV1
		if err := decodeBody(r, &body, s.cfg.MaxBodyBytes, false); err != nil {
			return err
		}
		cmd, err := s.createCommand(body.Name, body.ProjectID, body.Path)
		if err != nil {
			return err
		}
		cmd.Temporary, cmd.Mode = body.Temporary.Value, actors.CreateOnce
		p, _, err := s.cfg.Client.CreateProject(r.Context(), cmd)
		if err != nil {
			return err
		}
		writeJSON(w, http.StatusCreated, s.v1Project(p))
		return nil
	})
	s.route("POST", "/v2/compute/projects", func(w http.ResponseWriter, r *http.Request, _ httprouter.Params) error {
		var body projectCreateV2
		if err := decodeBody(r, &body, s.cfg.MaxBodyBytes, false); err != nil {
			return err
		}
		if !body.Name.Set {
			return newHTTPError(http.StatusBadRequest, "Invalid JSON: field \"name\" is required")
		}
		cmd, err := s.createCommand(body.Name, body.ProjectID, body.Path)
		if err != nil {
			return err
		}
		if cmd.Variables, err = checkVariables(body.Variables); err != nil {
			return err
		}
		// Idempotent, as GNS3 2.2: creating an open project returns it.
		cmd.Mode = actors.CreateOrGet
		p, _, err := s.cfg.Client.CreateProject(r.Context(), cmd)
		if err != nil {
			return err
		}
		writeJSON(w, http.StatusCreated, v2Project(p))
		return nil
	})

	s.route("GET", "/v1/projects/{project_id}", func(w http.ResponseWriter, r *http.Request, ps httprouter.Params) error {
		p, err := s.project(ps)
		if err != nil {
			return err
		}
		writeJSON(w, http.StatusOK, s.v1Project(p))
		return nil
	})
	s.route("GET", "/v2/compute/projects/{project_id}", func(w http.ResponseWriter, r *http.Request, ps httprouter.Params) error {
		p, err := s.project(ps)
		if err != nil {
			return err
		}
		writeJSON(w, http.StatusOK, v2Project(p))
		return nil
	})

	s.route("PUT", "/v1/projects/{project_id}", func(w http.ResponseWriter, r *http.Request, ps httprouter.Params) error {
		id, err := projectIDParam(ps)
		if err != nil {
			return err
		}
		var body projectUpdateV1
		if err := decodeBody(r, &body, s.cfg.MaxBodyBytes, false); err != nil {
			return err
		}
		if _, err := checkName(body.Name); err != nil {
			return err
		}
		cmd := actors.UpdateProject{ProjectID: id}
		if body.Name.Set {
			cmd.Name = &body.Name.Value // null: no name
		}
		if body.Temporary.Set && !body.Temporary.Null {
			cmd.Temporary = &body.Temporary.Value
		}
		if body.Path.Set && !body.Path.Null {
			cmd.Path = &body.Path.Value
		}
		p, err := s.cfg.Client.UpdateProject(r.Context(), cmd)
		if err != nil {
			return err
		}
		writeJSON(w, http.StatusOK, s.v1Project(p))
		return nil
	})
	s.route("PUT", "/v2/compute/projects/{project_id}", func(w http.ResponseWriter, r *http.Request, ps httprouter.Params) error {
		id, err := projectIDParam(ps)
		if err != nil {
			return err
		}
		var body struct {
			Name nullable[string] `json:"name"`
			projectSettingsV2
		}
		if err := decodeBody(r, &body, s.cfg.MaxBodyBytes, false); err != nil {
			return err
		}
		if _, err := checkName(body.Name); err != nil {
			return err
		}
		vars, err := checkVariables(body.Variables)
		if err != nil {
			return err
		}
		// GNS3 2.2 applies only "variables" on the compute; the other
		// members are validated and ignored.
		cmd := actors.UpdateProject{ProjectID: id}
		if body.Variables.Set {
			cmd.Variables = &vars
		}
		p, err := s.cfg.Client.UpdateProject(r.Context(), cmd)
		if err != nil {
			return err
		}
		writeJSON(w, http.StatusOK, v2Project(p))
		return nil
	})

	for _, prefix := range []string{"/v1/projects", "/v2/compute/projects"} {
		s.route("DELETE", prefix+"/{project_id}", func(w http.ResponseWriter, r *http.Request, ps httprouter.Params) error {
			id, err := projectIDParam(ps)
			if err != nil {
				return err
			}
			if err := s.cfg.Client.DeleteProject(r.Context(), id); err != nil {
				return err
			}
			w.WriteHeader(http.StatusNoContent)
			return nil
		})
		s.route("POST", prefix+"/{project_id}/close", func(w http.ResponseWriter, r *http.Request, ps httprouter.Params) error {
			id, err := projectIDParam(ps)
			if err != nil {
				return err
			}
			if err := decodeBody(r, &struct{}{}, s.cfg.MaxBodyBytes, true); err != nil {
				return err
			}
			if err := s.cfg.Client.CloseProject(r.Context(), id); err != nil {
				return err
			}
			w.WriteHeader(http.StatusNoContent)
			return nil
		})
	}

	// GNS3 1.5 deleted the files of removed VMs on commit; labd removes
	// them at once, so a commit has nothing left to write.
	s.route("POST", "/v1/projects/{project_id}/commit", func(w http.ResponseWriter, r *http.Request, ps httprouter.Params) error {
		if _, err := s.project(ps); err != nil {
			return err
		}
		if err := decodeBody(r, &struct{}{}, s.cfg.MaxBodyBytes, true); err != nil {
			return err
		}
		w.WriteHeader(http.StatusNoContent)
		return nil
	})
}

// project returns the open project of the route's {project_id}.
func (s *Server) project(ps httprouter.Params) (*replay.Project, error) {
	id, err := projectIDParam(ps)
	if err != nil {
		return nil, err
	}
	return s.cfg.Client.Project(id)
}
