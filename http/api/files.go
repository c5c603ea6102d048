package api

import (
	"errors"
	"io"
	"net/http"
	"strings"

	"github.com/julienschmidt/httprouter"
)

type fileJSON struct {
	MD5Sum string `json:"md5sum"`
	Path   string `json:"path"`
}

func (s *Server) fileRoutes() {
	for _, prefix := range []string{"/v1/projects", "/v2/compute/projects"} {
		s.route("GET", prefix+"/{project_id}/files", func(w http.ResponseWriter, r *http.Request, ps httprouter.Params) error {
			id, err := projectIDParam(ps)
			if err != nil {
				return err
			}
			files, err := s.cfg.Client.ListFiles(id)
			if err != nil {
				return err
			}
			out := make([]fileJSON, len(files))
			for i, f := range files {
				out[i] = fileJSON{MD5Sum: f.MD5Sum, Path: f.Path}
			}
			writeJSON(w, http.StatusOK, out)
			return nil
		})
		s.route("GET", prefix+"/{project_id}/files/{path:.+}", func(w http.ResponseWriter, r *http.Request, ps httprouter.Params) error {
			id, err := projectIDParam(ps)
			if err != nil {
				return err
			}
			f, err := s.cfg.Client.OpenFile(id, filePathParam(ps))
			if err != nil {
				return err
			}
			defer f.Close()
			w.Header().Set("Content-Type", "application/octet-stream")
			w.WriteHeader(http.StatusOK)
			_, err = io.Copy(w, f)
			return err
		})
	}
	upload := func(status int) handler {
		return func(w http.ResponseWriter, r *http.Request, ps httprouter.Params) error {
			id, err := projectIDParam(ps)
			if err != nil {
				return err
			}
			body := http.MaxBytesReader(nil, r.Body, s.cfg.MaxUploadBytes)
			if err := s.cfg.Client.WriteFile(r.Context(), id, filePathParam(ps), body); err != nil {
				if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
					return tooLarge("File too large: the limit is %d bytes", s.cfg.MaxUploadBytes)
				}
				return err
			}
			w.WriteHeader(status)
			return nil
		}
	}
	// GNS3 1.5 answered a file write with 200; 2.2 declares 200 but sends
	// 201.
	s.route("POST", "/v1/projects/{project_id}/files/{path:.+}", upload(http.StatusOK))
	s.route("POST", "/v2/compute/projects/{project_id}/files/{path:.+}", upload(http.StatusCreated))
}

// filePathParam returns the {path:.+} of a route without the leading slash
// httprouter's catch-all keeps; a second slash (an absolute path) stays
// and is refused by actors.CleanPath.
func filePathParam(ps httprouter.Params) string {
	return strings.TrimPrefix(ps.ByName("path"), "/")
}
