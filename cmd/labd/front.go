package main

import "net/http"

// front is labd's main listener: each request goes to the dialect whose
// paths it names, in the order of dialects, and to GNS3's API when none
// claims it. /v2/ is shared: GNS3 has /v2/compute, Nova /v2/{project_id};
// routing is by path segment, not by one router tree, so a dialect's
// routes cannot shadow another's.
type front struct {
	dialects []dialect
	gns3     http.Handler
}

// dialect is a dialect's claim on the main listener's paths.
type dialect struct {
	owns    func(path string) bool
	handler http.Handler
}

func (f front) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	for _, d := range f.dialects {
		if d.owns(r.URL.Path) {
			d.handler.ServeHTTP(w, r)
			return
		}
	}
	f.gns3.ServeHTTP(w, r)
}
