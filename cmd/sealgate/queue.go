package main

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/sealgate/sealgate/pkg/config"
	"github.com/sealgate/sealgate/pkg/events"
	"github.com/sealgate/sealgate/pkg/gateway"
	"github.com/sealgate/sealgate/pkg/store"
)

func init() { register(newQueueCmd) }

// queueEntryJSON is the shape scripts read from `queue list|show -o json`.
type queueEntryJSON struct {
	ID          string   `json:"id"`
	State       string   `json:"state"`
	Sender      string   `json:"sender"`
	Recipients  []string `json:"recipients"`
	Size        int64    `json:"size"`
	Attempts    int      `json:"attempts"`
	NextAttempt string   `json:"next_attempt,omitempty"`
	LastError   string   `json:"last_error,omitempty"`
	HoldReason  string   `json:"hold_reason,omitempty"`
	CreatedAt   string   `json:"created_at"`
	Node        string   `json:"node"`
	// Lane is the queue the message is in: "outbound" (to the relay) or
	// "inbound" (the [inbound] listener's, to inbound.next_hop).
	Lane string `json:"lane"`
	// LeaseNode is the node working on the message right now (postgres:
	// it holds the entry's lease until LeaseUntil); absent when none does.
	LeaseNode  string `json:"lease_node,omitempty"`
	LeaseUntil string `json:"lease_until,omitempty"`
}

// holder is the node working on e now: its live lease's node, else "-".
func (j queueEntryJSON) holder() string {
	if j.LeaseNode == "" {
		return "-"
	}
	return j.LeaseNode
}

func toQueueJSON(e store.QueueEntry) queueEntryJSON {
	j := queueEntryJSON{ID: e.ID, State: e.State, Sender: e.Sender, Recipients: e.Recipients, Size: e.Size,
		Attempts: e.Attempts, LastError: e.LastError, HoldReason: e.HoldReason,
		CreatedAt: e.CreatedAt.Format(time.RFC3339), Node: e.Node, Lane: e.Lane}
	if j.Recipients == nil {
		j.Recipients = []string{}
	}
	if !e.NextAttempt.IsZero() {
		j.NextAttempt = e.NextAttempt.Format(time.RFC3339)
	}
	if e.LeaseNode != "" && e.LeaseUntil.After(time.Now()) {
		j.LeaseNode, j.LeaseUntil = e.LeaseNode, e.LeaseUntil.Format(time.RFC3339)
	}
	return j
}

func newQueueCmd(a *app) *cobra.Command {
	cmd := &cobra.Command{Use: "queue", Short: "inspect and manage the spool (list, show, retry, delete)"}
	open := func(cmd *cobra.Command) (*runtime, error) {
		cfg, err := config.Load(a.configPath)
		if err != nil {
			return nil, asUsage(err)
		}
		return openRuntime(cmd.Context(), cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	}
	// withEntry opens the runtime, finds message id and hands both to fn.
	withEntry := func(cmd *cobra.Command, id string, fn func(rt *runtime, e store.QueueEntry) error) error {
		rt, err := open(cmd)
		if err != nil {
			return err
		}
		defer rt.store.Close()
		e, err := rt.store.QueueEntry(cmd.Context(), id)
		if errors.Is(err, store.ErrNotFound) {
			return fmt.Errorf("no message %s in the queue (see sealgate queue list)", id)
		}
		if err != nil {
			return err
		}
		return fn(rt, e)
	}
	// audited records an admin's change to message id; the change stands
	// either way, but the admin must know when the audit trail missed it.
	audited := func(cmd *cobra.Command, rt *runtime, action, id string) error {
		if err := rt.store.Audit(cmd.Context(), store.AuditEvent{Time: time.Now().UTC(), Actor: "cli", Action: "queue." + action, Subject: id}); err != nil {
			return fmt.Errorf("queue %s %s done, but its audit record was not written: %w", action, id, err)
		}
		return nil
	}
	var state, lane string
	list := &cobra.Command{
		Use: "list", Short: "one line per queued, deferred or held message", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if lane != "" && lane != store.LaneOutbound && lane != store.LaneInbound {
				return asUsage(fmt.Errorf("--lane %q: want %s or %s", lane, store.LaneOutbound, store.LaneInbound))
			}
			rt, err := open(cmd)
			if err != nil {
				return err
			}
			defer rt.store.Close()
			entries, err := rt.store.QueueEntries(cmd.Context(), store.QueueFilter{State: state, Lane: lane})
			if err != nil {
				return err
			}
			out := make([]queueEntryJSON, 0, len(entries))
			for _, e := range entries {
				out = append(out, toQueueJSON(e))
			}
			return a.print(out, func(w io.Writer) error {
				tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "ID\tLANE\tSTATE\tSIZE\tATTEMPTS\tSENDER\tRECIPIENTS\tNODE\tREASON")
				for _, e := range out {
					reason := e.HoldReason
					if reason == "" {
						reason = e.LastError
					}
					if len(reason) > 60 {
						reason = reason[:57] + "..."
					}
					fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d\t%s\t%s\t%s\t%s\n", e.ID, e.Lane, e.State, e.Size, e.Attempts, e.Sender,
						strings.Join(e.Recipients, ","), e.holder(), reason)
				}
				if len(out) == 0 {
					fmt.Fprintln(tw, "(queue empty)")
				}
				return tw.Flush()
			})
		},
	}
	list.Flags().StringVar(&state, "state", "", "only entries in this state: queued, deferred or held")
	list.Flags().StringVar(&lane, "lane", "", "only entries of this queue: outbound or inbound (default both)")
	show := &cobra.Command{
		Use: "show ID", Short: "one message's envelope and state (never its content)", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return withEntry(cmd, args[0], func(_ *runtime, e store.QueueEntry) error {
				j := toQueueJSON(e)
				return a.print(j, func(w io.Writer) error {
					fmt.Fprintf(w, "id:           %s\nlane:         %s\nstate:        %s\nnode:         %s\nsender:       %s\nrecipients:   %s\nsize:         %d\nattempts:     %d\ncreated:      %s\n",
						j.ID, j.Lane, j.State, j.Node, j.Sender, strings.Join(j.Recipients, ", "), j.Size, j.Attempts, j.CreatedAt)
					if j.NextAttempt != "" {
						fmt.Fprintf(w, "next attempt: %s\n", j.NextAttempt)
					}
					if j.LeaseNode != "" {
						fmt.Fprintf(w, "worked on by: %s (lease until %s)\n", j.LeaseNode, j.LeaseUntil)
					}
					if j.HoldReason != "" {
						fmt.Fprintf(w, "held because: %s\n", j.HoldReason)
					}
					if j.LastError != "" {
						fmt.Fprintf(w, "last error:   %s\n", j.LastError)
					}
					return nil
				})
			})
		},
	}
	retry := &cobra.Command{
		Use: "retry ID", Short: "release a held message or retry a deferred one now (policy is applied again)", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return withEntry(cmd, args[0], func(rt *runtime, e store.QueueEntry) error {
				sp, err := spoolOf(rt, e) // serve_inbound.go: the inbound queue has its own spool
				if err != nil {
					return err
				}
				if _, err := gateway.Release(cmd.Context(), rt.store, sp, queueEvents(rt), e.ID, "an operator (sealgate queue retry)"); err != nil {
					return err
				}
				if err := audited(cmd, rt, "retry", e.ID); err != nil {
					return err
				}
				return a.print(map[string]string{"id": e.ID, "state": gateway.StateQueued}, func(w io.Writer) error {
					_, err := fmt.Fprintf(w, "%s queued for delivery now (a running sealgate serve picks it up)\n", e.ID)
					return err
				})
			})
		},
	}
	del := &cobra.Command{
		Use: "delete ID", Short: "remove a message from the queue without delivering it", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return withEntry(cmd, args[0], func(rt *runtime, e store.QueueEntry) error {
				sp, err := spoolOf(rt, e) // serve_inbound.go: the inbound queue has its own spool
				if err != nil {
					return err
				}
				if err := gateway.Delete(cmd.Context(), rt.store, sp, rt.node, queueEvents(rt), e.ID, "an operator (sealgate queue delete)"); err != nil {
					return err
				}
				if err := audited(cmd, rt, "delete", e.ID); err != nil {
					return err
				}
				return a.print(map[string]string{"id": e.ID, "state": "deleted"}, func(w io.Writer) error {
					_, err := fmt.Fprintf(w, "%s deleted\n", e.ID)
					return err
				})
			})
		},
	}
	cmd.AddCommand(list, show, retry, del)
	return cmd
}

// queueEvents records the released and deleted events of the queue
// commands in the store (the events API shows them); the log line goes
// nowhere, the command prints its own.
func queueEvents(rt *runtime) *events.Recorder {
	return &events.Recorder{Store: rt.store, Logger: slog.New(slog.DiscardHandler), Node: rt.node}
}
