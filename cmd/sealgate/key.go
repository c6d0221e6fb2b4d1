package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/sealgate/sealgate/pkg/gateway"
	"github.com/sealgate/sealgate/pkg/pki/embeddedca"
	"github.com/sealgate/sealgate/pkg/secret"
	"github.com/sealgate/sealgate/pkg/store"
)

func init() { register(newKeyCmd) }

func newKeyCmd(a *app) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "key",
		Short: "the master key that seals private keys, PDF passwords and spooled mail",
		Args:  cobra.NoArgs,
	}
	var finish bool
	rotate := &cobra.Command{
		Use:   "rotate [--finish]",
		Short: "make a new master key and reseal everything under it; --finish deletes the old key once nothing needs it",
		Long: "rotate writes a new master key to pki.master_key_file, keeping the previous one as\n" +
			"<file>.old.<time>, then seals the stored secrets and the embedded CA's keys again under\n" +
			"the new key, each value replaced on its own: a crash at any point leaves every value\n" +
			"under the old or the new key, and both open. Spooled messages get their keys rewrapped\n" +
			"the same way (a message delivered meanwhile is not brought back). A running serve picks\n" +
			"up the new key within seconds. rotate --finish reseals what was written under the old key\n" +
			"since (a node that had not reloaded yet), checks\n" +
			"that nothing (store, CA, spool) still needs an old key and deletes the old key files.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if finish {
				return a.keyFinish(cmd.Context())
			}
			return a.keyRotate(cmd.Context())
		},
	}
	rotate.Flags().BoolVar(&finish, "finish", false, "delete the old master key files once nothing is sealed under them")
	cmd.AddCommand(rotate)
	return cmd
}

type keyRotateJSON struct {
	KeyID         string `json:"key_id"`
	OldKeyFile    string `json:"old_key_file,omitempty"`
	StoreValues   int    `json:"store_values_resealed"`
	CAKeys        int    `json:"ca_keys_resealed"`
	SpoolResealed int    `json:"spooled_messages_resealed"`
	SpoolPending  int    `json:"spooled_messages_on_old_key"`
	Finished      bool   `json:"finished"`
}

func (a *app) keyRotate(ctx context.Context) error {
	cfg, err := a.loadConfig()
	if err != nil {
		return err
	}
	if ctx == nil {
		ctx = context.Background()
	}
	ctx, cancel := context.WithTimeout(ctx, time.Hour)
	defer cancel()
	keyFile := cfg.Path(cfg.PKI.MasterKeyFile)
	if _, err := os.Stat(keyFile); err != nil {
		return usageErrorf("no master key at %s (pki.master_key_file) to rotate", keyFile)
	}
	oldPath, err := secret.RotateKeyFile(keyFile)
	if err != nil {
		return err
	}
	// From here on the old key is kept beside the new one: whatever
	// fails below, everything still opens, and rotate can be run again.
	st, kr, err := openStore(ctx, cfg)
	if err != nil {
		return fmt.Errorf("the new key is in place (old one kept as %s), but: %w", oldPath, err)
	}
	defer st.Close()
	out := keyRotateJSON{KeyID: kr.CurrentKeyID().String(), OldKeyFile: oldPath}
	if out.StoreValues, err = st.Reseal(ctx); err != nil {
		return fmt.Errorf("resealing the store (run key rotate again to continue; the old key is kept): %w", err)
	}
	caDir := cfg.DataPath("ca")
	if _, err := os.Stat(filepath.Join(caDir, "root.crt")); err == nil {
		if out.CAKeys, err = embeddedca.ResealKeys(caDir, kr); err != nil {
			return fmt.Errorf("resealing the CA keys (run key rotate again to continue; the old key is kept): %w", err)
		}
	}
	if sp, err := gateway.OpenSpool(cfg.DataPath("spool"), kr); err == nil {
		if out.SpoolResealed, out.SpoolPending, err = sp.Reseal(kr); err != nil {
			return fmt.Errorf("resealing the spool (run key rotate again to continue; the old key is kept): %w", err)
		}
	}
	n, err := resealQueueMessages(ctx, st, kr)
	if err != nil {
		return fmt.Errorf("resealing the queued messages (run key rotate again to continue; the old key is kept): %w", err)
	}
	out.SpoolResealed += n
	if n, err := staleQueueMessages(ctx, st, kr.NeedsReseal); err == nil {
		out.SpoolPending += n
	}
	return a.print(out, func(w io.Writer) error {
		_, err := fmt.Fprintf(w, "new master key %s; resealed %d stored secrets, %d CA keys and %d spooled messages; the old key is kept as %s\n",
			out.KeyID, out.StoreValues, out.CAKeys, out.SpoolResealed, oldPath)
		if err == nil && out.SpoolPending > 0 {
			_, err = fmt.Fprintf(w, "%d spooled messages could not be swapped here and still use it until delivered\n", out.SpoolPending)
		}
		if err == nil {
			_, err = fmt.Fprintf(w, "run `sealgate key rotate --finish` later (once every node uses the new key) to delete it\n")
		}
		return err
	})
}

func (a *app) keyFinish(ctx context.Context) error {
	cfg, err := a.loadConfig()
	if err != nil {
		return err
	}
	if ctx == nil {
		ctx = context.Background()
	}
	ctx, cancel := context.WithTimeout(ctx, time.Hour)
	defer cancel()
	keyFile := cfg.Path(cfg.PKI.MasterKeyFile)
	olds, err := secret.OldKeyFiles(keyFile)
	if err != nil {
		return err
	}
	if len(olds) == 0 {
		return usageErrorf("there is no old master key beside %s: nothing to finish", keyFile)
	}
	st, kr, err := openStore(ctx, cfg)
	if err != nil {
		return err
	}
	defer st.Close()
	// Values written under an old key since rotate (a node that had not
	// reloaded yet) are resealed now, so finish is safe to retry.
	if _, err := st.Reseal(ctx); err != nil {
		return err
	}
	stale, err := st.StaleSecrets(ctx)
	if err != nil {
		return err
	}
	if stale > 0 {
		return fmt.Errorf("%d stored secrets are still under an old key; the old key files stay", stale)
	}
	caDir := cfg.DataPath("ca")
	if _, err := os.Stat(filepath.Join(caDir, "root.crt")); err == nil {
		if _, err := embeddedca.ResealKeys(caDir, kr); err != nil {
			return err
		}
		if n, err := embeddedca.StaleKeys(caDir, kr); err != nil || n > 0 {
			return fmt.Errorf("the CA's keys are still under an old key (%d, %v); the old key files stay", n, err)
		}
	}
	if sp, err := gateway.OpenSpool(cfg.DataPath("spool"), kr); err == nil {
		if _, _, err := sp.Reseal(kr); err != nil {
			return err
		}
		n, err := sp.StaleKeys(kr.NeedsReseal)
		if err != nil {
			return err
		}
		if n > 0 {
			return fmt.Errorf("%d spooled messages still use an old key (held or waiting for a retry): release, deliver or delete them, then run --finish again; the old key files stay", n)
		}
	}
	if _, err := resealQueueMessages(ctx, st, kr); err != nil {
		return err
	}
	if n, err := staleQueueMessages(ctx, st, kr.NeedsReseal); err != nil {
		return err
	} else if n > 0 {
		return fmt.Errorf("%d queued messages in the database still use an old key (held or waiting for a retry): release, deliver or delete them, then run --finish again; the old key files stay", n)
	}
	for _, p := range olds {
		if err := os.Remove(p); err != nil {
			return fmt.Errorf("removing %s: %w", p, err)
		}
	}
	return a.print(keyRotateJSON{KeyID: kr.CurrentKeyID().String(), Finished: true}, func(w io.Writer) error {
		_, err := fmt.Fprintf(w, "nothing is sealed under an old key any more: removed %d old key file(s); %s is the only master key\n", len(olds), kr.CurrentKeyID())
		return err
	})
}

// watchMasterKey reloads the master key file every few seconds, so that
// after `sealgate key rotate` serve seals new values (spool, passwords,
// keys) under the new key without a restart. Opening a value under a key
// it lacks makes the keyring look at once anyway.
func watchMasterKey(ctx context.Context, kr *secret.Keyring, log *slog.Logger) {
	t := time.NewTicker(5 * time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			changed, err := kr.Reload()
			if err != nil {
				log.Error("reloading the master key file (the keys loaded before stay in use)", "err", err)
			} else if changed {
				log.Info("master key rotated: sealing new values under it", "key_id", kr.CurrentKeyID().String())
			}
		}
	}
}

// resealQueueMessages rewraps the message keys of the messages kept in
// the database (store.driver = "postgres") under the current master key:
// only each message's header is swapped, in the database, and only while
// it is unchanged, so a message delivered or resealed meanwhile is left
// alone. SQLite keeps messages in the spool: nothing to do there.
func resealQueueMessages(ctx context.Context, st *store.Store, kr gateway.Resealer) (int, error) {
	type head struct {
		id   string
		head []byte
	}
	var heads []head
	if err := st.QueueMessageHeads(ctx, func(id string, h []byte) error {
		heads = append(heads, head{id, h})
		return nil
	}); err != nil {
		return 0, err
	}
	n := 0
	for _, h := range heads {
		oldLen, header, stale, err := gateway.ResealHeader(kr, h.id, h.head)
		if err != nil {
			return n, fmt.Errorf("queued message %s: %w", h.id, err)
		}
		if !stale {
			continue
		}
		ok, err := st.ReplaceQueueMessageHeader(ctx, h.id, h.head[:oldLen], header)
		if err != nil {
			return n, err
		}
		if ok {
			n++
		}
	}
	return n, nil
}

// staleQueueMessages counts the messages kept in the database (store.driver
// = "postgres") whose message key is wrapped under an old master key.
func staleQueueMessages(ctx context.Context, st *store.Store, needsReseal func([]byte) bool) (int, error) {
	n := 0
	err := st.QueueMessageHeads(ctx, func(id string, head []byte) error {
		stale, err := gateway.StaleSealed(head, needsReseal)
		if err != nil {
			return fmt.Errorf("queued message %s: %w", id, err)
		}
		if stale {
			n++
		}
		return nil
	})
	return n, err
}
