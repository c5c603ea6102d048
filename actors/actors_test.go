package actors_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"labd/actors"
	"labd/actors/actorstest"
	"labd/events"
	"labd/events/jetstream/jstest"
	"labd/nio"
	"labd/replay"
)

const compute = "actors-test"

type fixture struct {
	env    *jstest.Env
	client *actors.Client
	pool   *nio.Pool
	dir    string
}

func start(t testing.TB, env *jstest.Env) *fixture {
	t.Helper()
	if env == nil {
		env = jstest.Start(t, jstest.Options{})
	}
	st, err := replay.Rehydrate(t.Context(), env.Store, compute, nil)
	if err != nil {
		t.Fatal(err)
	}
	pool, err := nio.NewPool("udp", "127.0.0.1", nio.PortRange{First: 40000, Last: 49999})
	if err != nil {
		t.Fatal(err)
	}
	consoles, err := nio.NewPool("tcp", "127.0.0.1", nio.PortRange{First: 50000, Last: 50999})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	c, err := actors.Start(actors.Config{
		ComputeID: compute, Store: env.Store, ProjectsDir: filepath.Join(dir, "projects"), UDPPorts: pool, ConsolePorts: consoles,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), StoreTimeout: 2 * time.Second,
		NodeUser: actorstest.NodeUser(t, dir),
	}, st)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Stop(context.Background()) })
	return &fixture{env: env, client: c, pool: pool, dir: dir}
}

func (f *fixture) create(t testing.TB, name string) string {
	t.Helper()
	id := uuid.NewString()
	if _, _, err := f.client.CreateProject(t.Context(), actors.CreateProject{ProjectID: id, Name: name}); err != nil {
		t.Fatal(err)
	}
	return id
}

// Start returns only once every project of the history is served: a read
// right after it must see them all.
func TestStartServesEveryProjectAtOnce(t *testing.T) {
	env := jstest.Start(t, jstest.Options{})
	const n = 300
	for i := range n {
		id := uuid.NewString()
		if _, err := env.Store.Append(t.Context(), events.ProjectSubject(compute, id), 0, uuid.NewString(),
			events.New(time.Now(), id, "", events.ProjectCreated{Name: fmt.Sprint(i)})); err != nil {
			t.Fatal(err)
		}
	}
	f := start(t, env)
	if got := len(f.client.Projects()); got != n {
		t.Fatalf("%d projects served right after Start, want %d", got, n)
	}
}

// Another writer on the same aggregate (a second daemon misconfigured
// with our compute id) makes the next command fail with ErrConflict and
// nothing written; the actor then re-reads its aggregate and carries on
// from the true history.
func TestForeignWriterConflictThenRecovery(t *testing.T) {
	f := start(t, nil)
	id := f.create(t, "mine")
	p, _ := f.client.Project(id)
	if _, err := f.env.Store.Append(t.Context(), events.ProjectSubject(compute, id), p.Version, uuid.NewString(),
		events.New(time.Now(), id, "", events.ProjectUpdated{Name: "theirs"})); err != nil {
		t.Fatal(err)
	}
	before, _ := f.env.Store.LastSequence(t.Context())
	name := "again"
	_, err := f.client.UpdateProject(t.Context(), actors.UpdateProject{ProjectID: id, Name: &name})
	if !errors.Is(err, actors.ErrConflict) {
		t.Fatalf("update after a foreign write: %v, want ErrConflict", err)
	}
	if after, _ := f.env.Store.LastSequence(t.Context()); after != before {
		t.Fatal("a conflicting command wrote to the stream")
	}
	got, err := f.client.UpdateProject(t.Context(), actors.UpdateProject{ProjectID: id, Temporary: new(true)})
	if err != nil {
		t.Fatalf("the command after the conflict: %v", err)
	}
	if got.Name != "theirs" || !got.Temporary {
		t.Fatalf("state after recovery %+v: the foreign rename must be folded in", got)
	}
}

// Closing a project while requests for it pour in: every request gets an
// answer (none is dropped with the passivated actor), and the served state
// is the fold of the stream.
func TestPassivationAnswersEveryRequest(t *testing.T) {
	f := start(t, nil)
	id := f.create(t, "p")
	var wg sync.WaitGroup
	errs := make(chan error, 400)
	for i := range 400 {
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			var err error
			switch rand.IntN(4) {
			case 0:
				err = f.client.CloseProject(ctx, id)
			case 1:
				_, _, err = f.client.CreateProject(ctx, actors.CreateProject{ProjectID: id, Name: fmt.Sprint(i), Mode: actors.CreateOrGet})
			case 2:
				_, err = f.client.AllocateUDPPort(ctx, id)
			case 3:
				name := fmt.Sprint("n", i)
				_, err = f.client.UpdateProject(ctx, actors.UpdateProject{ProjectID: id, Name: &name})
			}
			if err != nil && !errors.Is(err, actors.ErrNotFound) {
				errs <- err // includes ErrUnavailable: an unanswered request
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("a request failed other than with not found: %v", err)
	}
	var folded *replay.Project
	if _, err := f.env.Store.Load(t.Context(), events.ProjectSubject(compute, id), 1, func(r events.Record) error {
		var err error
		folded, err = replay.ApplyProject(folded, r)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	served, err := f.client.Project(id)
	if folded.IsOpen() != (err == nil) {
		t.Fatalf("stream says open=%v, client says %v", folded.IsOpen(), err)
	}
	if err == nil && served.Version != folded.Version {
		t.Fatalf("served version %d, stream %d", served.Version, folded.Version)
	}
	// Ports held are exactly those of the open project, if any.
	want := 0
	if folded.IsOpen() {
		want = len(folded.UDPPorts)
	}
	if got := len(f.pool.Used()); got != want {
		t.Fatalf("%d ports reserved, the stream holds %d", got, want)
	}
}

// With the store gone, commands fail as unavailable and change nothing,
// while reads keep answering from the snapshots.
func TestStoreDownReadsKeepWorking(t *testing.T) {
	f := start(t, nil)
	id := f.create(t, "p")
	f.env.Stop()
	_, err := f.client.AllocateUDPPort(t.Context(), id)
	if !errors.Is(err, actors.ErrUnavailable) {
		t.Fatalf("command with the store down: %v, want ErrUnavailable", err)
	}
	if p, err := f.client.Project(id); err != nil || p.Name != "p" || len(p.UDPPorts) != 0 {
		t.Fatalf("read with the store down: %+v %v", p, err)
	}
	if n := len(f.client.Projects()); n != 1 {
		t.Fatalf("list with the store down: %d projects", n)
	}
}

// A project closed and created again continues its aggregate: the new
// creation expects the closed aggregate's last sequence.
func TestRecreateAfterClose(t *testing.T) {
	f := start(t, nil)
	id := f.create(t, "first")
	if _, err := f.client.AllocateUDPPort(t.Context(), id); err != nil {
		t.Fatal(err)
	}
	if err := f.client.CloseProject(t.Context(), id); err != nil {
		t.Fatal(err)
	}
	if len(f.pool.Used()) != 0 {
		t.Fatal("close did not release the port")
	}
	p, created, err := f.client.CreateProject(t.Context(), actors.CreateProject{ProjectID: id, Name: "second"})
	if err != nil || !created || p.Name != "second" || len(p.UDPPorts) != 0 {
		t.Fatalf("re-create: %+v %v %v", p, created, err)
	}
	if _, _, err := f.client.CreateProject(t.Context(), actors.CreateProject{ProjectID: id, Name: "third"}); !errors.Is(err, actors.ErrAlreadyExists) {
		t.Fatalf("create of an open project in CreateOnce mode: %v", err)
	}
}
