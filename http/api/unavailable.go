package api

import (
	"encoding/json"
	"net/http"

	"github.com/julienschmidt/httprouter"

	"labd/actors"
)

// The routes of the kinds labd cannot run here (a table entry without a
// wire): they exist as GNS3 has them, so that a client learns why with a
// 409 in GNS3's shape instead of a 404 for a route it knows. A create is
// refused with what Client.Available says is missing, in GNS3's words; a
// route naming a node answers as for any node that does not exist, since
// none of these kinds can have one.

// unavailable is the refusal of kind k's nodes: the driver's reason,
// with GNS3's exception class in v2.
func (s *Server) unavailable(k *nodeKind, v apiVersion) error {
	err := s.cfg.Client.Available(k.kind)
	if err == nil {
		// The driver could run the kind, but this API has no wire shape
		// for it yet.
		err = actors.Conflict("labd serves no %s nodes on this API yet", k.kind)
	}
	if v == v1 || k.exception == "" {
		// GNS3 1.5's node errors carry no exception.
		return err
	}
	return &nodeError{exception: k.exception, err: err}
}

// refuseCreate answers a create of a kind labd cannot run, once the body
// is known to be a JSON object and the project to exist, as GNS3 checks
// its schema and the project before its manager fails.
func (s *Server) refuseCreate(k *nodeKind, v apiVersion, pid string, body []byte) error {
	if err := decodeObject(body, &map[string]json.RawMessage{}); err != nil {
		return err
	}
	if _, err := s.cfg.Client.Project(pid); err != nil {
		return err
	}
	return s.unavailable(k, v)
}

// noSuchNode serves a node route of a group whose kinds labd cannot run.
// ofKind has answered for nodes of other kinds; what is left is a node
// that does not exist, or one of these kinds that a labd able to run it
// recorded.
func (s *Server) noSuchNode(g *routeGroup) handler {
	return func(w http.ResponseWriter, r *http.Request, ps httprouter.Params) error {
		n, err := s.routeNode(g, ps)
		if err != nil {
			return err
		}
		return s.unavailable(g.kindOf(n.Kind), g.v)
	}
}

// inventory serves a kind's compute-wide listing (/docker/images,
// /virtualbox/vms, /vmware/vms): GNS3 asks the engine, which labd does
// not have.
func (s *Server) inventory(k *nodeKind, v apiVersion) handler {
	return func(w http.ResponseWriter, r *http.Request, _ httprouter.Params) error {
		return s.unavailable(k, v)
	}
}
