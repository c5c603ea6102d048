package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"time"

	"labd/events"
)

// operationRow is one operation record as `labd audit --operations` shows
// it: folded from the node events that carry it, the whole history (a
// node's state keeps only its last replay.MaxOperations).
type operationRow struct {
	ID        string    `json:"id"`
	ProjectID string    `json:"project_id"`
	NodeID    string    `json:"node_id"`
	Op        string    `json:"op"`
	RequestID string    `json:"request_id,omitempty"`
	State     string    `json:"state"`
	Message   string    `json:"message,omitempty"`
	Error     string    `json:"error,omitempty"`
	Started   time.Time `json:"started"`
	Ended     time.Time `json:"ended,omitzero"`
	// seq orders the rows: the sequence of the record's first event.
	seq uint64
}

const operationRowFormat = "%-24s %-24s %-36s %-36s %-14s %-8s %s\n"

// auditOperations prints every operation record of the events filter
// selects, oldest first, with its outcome; one still in flight shows
// STARTED and no end.
func auditOperations(ctx context.Context, l interface {
	Load(context.Context, string, uint64, func(events.Record) error) (uint64, error)
}, filter string, from, to time.Time, asJSON bool, w io.Writer) error {
	rows := map[string]*operationRow{}
	_, err := l.Load(ctx, filter, 1, func(r events.Record) error {
		if (!from.IsZero() && r.At.Before(from)) || (!to.IsZero() && r.At.After(to)) {
			return nil
		}
		switch d := r.Data.(type) {
		case events.OperationStarted:
			rows[d.ID] = &operationRow{ID: d.ID, ProjectID: r.ProjectID, NodeID: r.NodeID, Op: d.Op, RequestID: d.RequestID,
				State: d.State, Started: r.At, seq: r.Seq}
		case events.OperationEnded:
			row := rows[d.ID]
			if row == nil {
				row = &operationRow{ID: d.ID, ProjectID: r.ProjectID, NodeID: r.NodeID, Started: r.At, seq: r.Seq}
				if d.Record != nil {
					row.Op, row.RequestID = d.Record.Op, d.Record.RequestID
				}
				rows[d.ID] = row
			}
			row.State, row.Message, row.Error, row.Ended = d.State, d.Message, d.Error, r.At
		}
		return nil
	})
	if err != nil {
		return err
	}
	sorted := make([]*operationRow, 0, len(rows))
	for _, r := range rows {
		sorted = append(sorted, r)
	}
	slices.SortFunc(sorted, func(a, b *operationRow) int { return int(a.seq) - int(b.seq) })
	if !asJSON {
		fmt.Fprintf(w, operationRowFormat, "STARTED", "ENDED", "PROJECT", "NODE", "OP", "STATE", "MESSAGE")
	}
	for _, r := range sorted {
		if asJSON {
			b, err := json.Marshal(r)
			if err != nil {
				return err
			}
			fmt.Fprintf(w, "%s\n", b)
			continue
		}
		ended, msg := "-", r.Message
		if !r.Ended.IsZero() {
			ended = r.Ended.Format(timeLayout)
		}
		if r.Error != "" {
			msg = r.Error
		}
		fmt.Fprintf(w, operationRowFormat, r.Started.Format(timeLayout), ended, r.ProjectID, r.NodeID, r.Op, r.State, msg)
	}
	return nil
}
