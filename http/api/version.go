package api

import (
	"net/http"
	"runtime"
	"sync"

	"github.com/julienschmidt/httprouter"

	"labd/actors"
)

type versionJSON struct {
	Local   bool   `json:"local"`
	Version string `json:"version"`
}

// capabilitiesJSON is exactly GNS3 2.2's CAPABILITIES_SCHEMA: a GNS3
// 2.2.59 controller validates the reply with additionalProperties false
// and refuses the compute (400 to POST /v2/computes) for any other member.
type capabilitiesJSON struct {
	NodeTypes []string `json:"node_types"`
	Platform  string   `json:"platform"`
	Version   string   `json:"version"`
}

func (s *Server) versionRoutes() {
	// "local" is GNS3's --local mode, in which the server trusts any path
	// its client names. labd never does.
	version := func(w http.ResponseWriter, r *http.Request, _ httprouter.Params) error {
		writeJSON(w, http.StatusOK, versionJSON{Local: false, Version: s.cfg.Version})
		return nil
	}
	s.route("GET", "/v1/version", version)
	s.route("GET", "/v2/compute/version", version)
	s.route("POST", "/v1/version", func(w http.ResponseWriter, r *http.Request, _ httprouter.Params) error {
		var body struct {
			Version field[string] `json:"version"`
			Local   field[bool]   `json:"local"`
		}
		if err := decodeBody(r, &body, s.cfg.MaxBodyBytes, false); err != nil {
			return err
		}
		if !body.Version.Set {
			return newHTTPError(http.StatusBadRequest, "Invalid JSON: field \"version\" is required")
		}
		if body.Version.Value != s.cfg.Version {
			return actors.Conflict("Client version %s differs with server version %s", body.Version.Value, s.cfg.Version)
		}
		writeJSON(w, http.StatusOK, map[string]string{"version": s.cfg.Version})
		return nil
	})
	s.route("GET", "/v2/compute/capabilities", func(w http.ResponseWriter, r *http.Request, _ httprouter.Params) error {
		writeJSON(w, http.StatusOK, capabilitiesJSON{
			NodeTypes: s.nodeTypes(),
			Platform:  runtime.GOOS,
			Version:   s.cfg.Version,
		})
		return nil
	})

	s.route("POST", "/v1/config/reload", func(w http.ResponseWriter, r *http.Request, _ httprouter.Params) error {
		if err := s.serverControl(r); err != nil {
			return err
		}
		if s.cfg.Reload != nil {
			if err := s.cfg.Reload(); err != nil {
				return err
			}
		}
		w.WriteHeader(http.StatusCreated)
		return nil
	})
	var shutdownOnce sync.Once
	s.route("POST", "/v1/server/shutdown", func(w http.ResponseWriter, r *http.Request, _ httprouter.Params) error {
		if err := s.serverControl(r); err != nil {
			return err
		}
		w.WriteHeader(http.StatusCreated)
		if s.cfg.Shutdown != nil {
			// The daemon's graceful shutdown waits for in-flight requests,
			// this one included, so the reply still goes out.
			shutdownOnce.Do(s.cfg.Shutdown)
		}
		return nil
	})
}

// serverControl checks a server control request: allowed only when the
// daemon was started with --allow-server-control.
func (s *Server) serverControl(r *http.Request) error {
	if !s.cfg.AllowServerControl {
		return actors.Forbidden("%s is refused: start labd with --allow-server-control to allow it", r.URL.Path)
	}
	return decodeBody(r, &struct{}{}, s.cfg.MaxBodyBytes, true)
}
