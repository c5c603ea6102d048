package api

import (
	"context"
	"errors"
	"io"
	"io/fs"
	"maps"
	"net/http"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/julienschmidt/httprouter"

	"labd/actors/qemu"
)

// qemuImgCreate is the body of POST /qemu/img, GNS3's
// QEMU_IMAGE_CREATE_SCHEMA.
type qemuImgCreate struct {
	QemuImg       field[string] `json:"qemu_img"`
	Path          field[string] `json:"path"`
	Format        field[string] `json:"format"`
	Size          field[int]    `json:"size"`
	Preallocation field[string] `json:"preallocation"`
	ClusterSize   field[int]    `json:"cluster_size"`
	RefcountBits  field[int]    `json:"refcount_bits"`
	LazyRefcounts field[string] `json:"lazy_refcounts"`
	Subformat     field[string] `json:"subformat"`
	Static        field[string] `json:"static"`
	ZeroedGrain   field[string] `json:"zeroed_grain"`
	AdapterType   field[string] `json:"adapter_type"`
}

// qemuImgResize is the body of PUT /v2/compute/qemu/img, GNS3's
// QEMU_IMAGE_UPDATE_SCHEMA.
type qemuImgResize struct {
	QemuImg field[string] `json:"qemu_img"`
	Path    field[string] `json:"path"`
	Extend  field[int]    `json:"extend"`
}

// qemuImageRoutes registers the server-level QEMU routes: the binaries
// and KVM capabilities of the host, qemu-img create and resize, and the
// image store (list, upload, download).
func (s *Server) qemuImageRoutes() {
	for _, prefix := range []string{"/v1/qemu", "/v2/compute/qemu"} {
		s.route("GET", prefix+"/binaries", s.qemuBinaries)
		s.route("GET", prefix+"/img-binaries", s.qemuImgBinaries)
		s.route("POST", prefix+"/img", s.qemuImgCreate)
	}
	s.route("GET", "/v2/compute/qemu/capabilities", func(w http.ResponseWriter, r *http.Request, _ httprouter.Params) error {
		writeJSON(w, http.StatusOK, map[string][]string{"kvm": qemu.KVMArchs()})
		return nil
	})
	s.route("PUT", "/v2/compute/qemu/img", s.qemuImgResize)
	s.route("GET", "/v1/qemu/vms", s.qemuImageList)
	s.route("GET", "/v2/compute/qemu/images", s.qemuImageList)
	s.route("POST", "/v1/qemu/vms/{path:.+}", s.qemuImageUpload("path"))
	s.route("POST", "/v2/compute/qemu/images/{filename:.+}", s.qemuImageUpload("filename"))
	s.route("GET", "/v2/compute/qemu/images/{filename:.+}", s.qemuImageDownload)
}

// qemuBinaries lists qemu-system-* binaries, filtered by the platforms of
// an optional body {"archs": [...]} or query ?archs=a,b.
func (s *Server) qemuBinaries(w http.ResponseWriter, r *http.Request, _ httprouter.Params) error {
	var body struct {
		Archs field[[]string] `json:"archs"`
	}
	if err := decodeBody(r, &body, s.cfg.MaxBodyBytes, true); err != nil {
		return err
	}
	archs := body.Archs.Value
	if !body.Archs.Set {
		for _, v := range r.URL.Query()["archs"] {
			archs = append(archs, strings.Split(v, ",")...)
		}
	}
	for _, a := range archs {
		if !slices.Contains(qemu.Platforms, a) {
			return newHTTPError(http.StatusBadRequest, "archs: %q is not one of %s", a, strings.Join(qemu.Platforms, ", "))
		}
	}
	bins, err := s.cfg.QEMU.Systems(r.Context(), archs)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, bins)
	return nil
}

func (s *Server) qemuImgBinaries(w http.ResponseWriter, r *http.Request, _ httprouter.Params) error {
	if err := decodeBody(r, &struct{}{}, s.cfg.MaxBodyBytes, true); err != nil {
		return err
	}
	bins, err := s.cfg.QEMU.Imgs(r.Context())
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, bins)
	return nil
}

// requireMembers refuses a body that lacks one of the named members.
func requireMembers(set map[string]bool) error {
	for _, name := range slices.Sorted(maps.Keys(set)) {
		if !set[name] {
			return newHTTPError(http.StatusBadRequest, "Invalid JSON: field %q is required", name)
		}
	}
	return nil
}

// qemuImgCreate creates a disk image with the host's qemu-img: GNS3 runs
// the qemu_img the client names, labd only one its Finder finds. A
// relative path goes into the image store, an absolute one must lie in
// the store or in a project directory.
func (s *Server) qemuImgCreate(w http.ResponseWriter, r *http.Request, _ httprouter.Params) error {
	var b qemuImgCreate
	if err := decodeBody(r, &b, s.cfg.MaxBodyBytes, false); err != nil {
		return err
	}
	if err := requireMembers(map[string]bool{"qemu_img": b.QemuImg.Set, "path": b.Path.Set, "format": b.Format.Set, "size": b.Size.Set}); err != nil {
		return err
	}
	bin, err := s.cfg.QEMU.Img(b.QemuImg.Value)
	if err != nil {
		return imageError(err)
	}
	path, err := s.cfg.Images.Locate(b.Path.Value, s.projectDirOf(b.Path.Value))
	if err != nil {
		return imageError(err)
	}
	opts := qemu.ImageOptions{
		Format: b.Format.Value, SizeMB: b.Size.Value,
		Preallocation: b.Preallocation.Value, LazyRefcounts: b.LazyRefcounts.Value, Subformat: b.Subformat.Value,
		Static: b.Static.Value, ZeroedGrain: b.ZeroedGrain.Value, AdapterType: b.AdapterType.Value,
		ClusterSize: b.ClusterSize.Value, RefcountBits: b.RefcountBits.Value,
	}
	if err := qemu.CreateImage(r.Context(), qemu.Img{Path: bin}, path, opts); err != nil {
		return imageError(err)
	}
	w.WriteHeader(http.StatusCreated)
	return nil
}

// qemuImgResize grows an existing image by extend MB; without extend it
// only checks its members, as GNS3 does nothing then.
func (s *Server) qemuImgResize(w http.ResponseWriter, r *http.Request, _ httprouter.Params) error {
	var b qemuImgResize
	if err := decodeBody(r, &b, s.cfg.MaxBodyBytes, false); err != nil {
		return err
	}
	if err := requireMembers(map[string]bool{"qemu_img": b.QemuImg.Set, "path": b.Path.Set}); err != nil {
		return err
	}
	bin, err := s.cfg.QEMU.Img(b.QemuImg.Value)
	if err != nil {
		return imageError(err)
	}
	if b.Path.Value == "" {
		return newHTTPError(http.StatusBadRequest, "path must not be empty")
	}
	path, err := s.cfg.Images.Resolve(b.Path.Value, s.projectDirOf(b.Path.Value))
	if err != nil {
		return imageError(err)
	}
	if b.Extend.Set {
		if err := qemu.ResizeImage(r.Context(), qemu.Img{Path: bin}, path, b.Extend.Value); err != nil {
			return imageError(err)
		}
	}
	w.WriteHeader(http.StatusCreated)
	return nil
}

// projectDirOf returns the project directory an absolute path lies in
// (<projects>/<project uuid>), or "" when it lies in none.
func (s *Server) projectDirOf(p string) string {
	if s.cfg.Client == nil || !filepath.IsAbs(p) {
		return ""
	}
	projects := s.cfg.Client.ProjectsDir()
	rel, err := filepath.Rel(projects, filepath.Clean(p))
	if err != nil || !filepath.IsLocal(rel) {
		return ""
	}
	first, _, _ := strings.Cut(filepath.ToSlash(rel), "/")
	if _, err := parseID("Project", first); err != nil {
		return ""
	}
	return filepath.Join(projects, first)
}

func (s *Server) qemuImageList(w http.ResponseWriter, r *http.Request, _ httprouter.Params) error {
	if err := decodeBody(r, &struct{}{}, s.cfg.MaxBodyBytes, true); err != nil {
		return err
	}
	images, err := s.cfg.Images.List()
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, images)
	return nil
}

// qemuImageUpload stores the raw body as an image; param names the
// route's catch-all.
func (s *Server) qemuImageUpload(param string) handler {
	return func(w http.ResponseWriter, r *http.Request, ps httprouter.Params) error {
		name := strings.TrimPrefix(ps.ByName(param), "/")
		if name == "" {
			return newHTTPError(http.StatusBadRequest, "an image file name is required")
		}
		body := http.MaxBytesReader(nil, r.Body, s.cfg.MaxUploadBytes)
		if _, err := s.cfg.Images.Upload(name, body); err != nil {
			if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
				return tooLarge("File too large: the limit is %d bytes", s.cfg.MaxUploadBytes)
			}
			return imageError(err)
		}
		w.WriteHeader(http.StatusNoContent)
		return nil
	}
}

func (s *Server) qemuImageDownload(w http.ResponseWriter, r *http.Request, ps httprouter.Params) error {
	name := strings.TrimPrefix(ps.ByName("filename"), "/")
	f, err := s.cfg.Images.Open(name)
	if err != nil {
		return imageError(err)
	}
	defer f.Close()
	if st, err := f.Stat(); err == nil {
		w.Header().Set("Content-Length", strconv.FormatInt(st.Size(), 10))
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	w.WriteHeader(http.StatusOK)
	_, err = io.Copy(w, f)
	return err
}

// imageError gives the qemu package's errors their statuses: a refused
// path 403 (GNS3's answer to a path outside its directories), a binary
// that is not QEMU or an invalid option 400, a missing image 404, an
// existing one or a qemu-img failure 409 (GNS3's QemuError). Anything
// else stays an internal error.
func imageError(err error) error {
	msg := strings.TrimPrefix(err.Error(), "qemu: ")
	var missing *qemu.MissingError
	switch {
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return err
	case errors.Is(err, qemu.ErrBadImagePath):
		return newHTTPError(http.StatusForbidden, "Permission denied: %s", msg)
	case errors.Is(err, qemu.ErrNotQEMU), errors.Is(err, qemu.ErrInvalid):
		return newHTTPError(http.StatusBadRequest, "%s", msg)
	case errors.As(err, &missing):
		return newHTTPError(http.StatusConflict, "%s", msg)
	case errors.Is(err, fs.ErrNotExist):
		return newHTTPError(http.StatusNotFound, "%s", msg)
	case errors.Is(err, fs.ErrExist), errors.Is(err, qemu.ErrQemuImg):
		return newHTTPError(http.StatusConflict, "%s", msg)
	}
	return err
}
