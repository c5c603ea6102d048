package jetstream

import "testing"

func TestSubjectMatches(t *testing.T) {
	for _, tc := range []struct {
		filter, subject string
		want            bool
	}{
		{"labd.ev.c1.>", "labd.ev.c1.p.project", true},
		{"labd.ev.c1.>", "labd.ev.c1.p.node.n", true},
		{"labd.ev.c1.>", "labd.ev.c1", false},
		{"labd.ev.c1.>", "labd.ev.c10.p.project", false},
		{"labd.ev.c1.>", "labd.ev.c2.p.project", false},
		{"labd.ev.*.compute", "labd.ev.c1.compute", true},
		{"labd.ev.*.compute", "labd.ev.c1.p.project", false},
		{"labd.ev.c1.p.project", "labd.ev.c1.p.project", true},
		{"labd.ev.c1.p.project", "labd.ev.c1.p.project.x", false},
		{"labd.ev.c1.p.project.x", "labd.ev.c1.p.project", false},
		{"a.*", "a.b", true},
		{"a.*", "a.b.c", false},
		{">", "a", true},
	} {
		if got := subjectMatches(tc.filter, tc.subject); got != tc.want {
			t.Errorf("subjectMatches(%q, %q) = %v, want %v", tc.filter, tc.subject, got, tc.want)
		}
	}
}
