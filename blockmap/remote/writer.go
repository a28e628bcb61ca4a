package remote

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// One writer per remote. Two appliances that replicate to and prune one
// bucket at once can lose data: a prune of one deletes the packs that no
// manifest references yet, while the other's replication is about to
// write a manifest that references them (it found them in its block
// cache). The local lock (cmd/cairn) keeps one appliance's runs apart;
// across appliances the bucket holds a claim, cairn/writer, naming the
// appliance that writes it. Replicate, Prune and Forget refuse to run
// when the claim names another appliance (ErrOtherWriter); TakeOver moves
// the claim (disaster recovery: the new appliance replaces the lost one).

// writerName is the object holding the claim: sealed with the master key
// (it names a host and a path), written with the remote's retention like
// every object. A version put over it by someone holding the credentials
// does not authenticate and is passed over (readVersions).
const writerName = prefix + "writer"

// Writer identifies an appliance that writes a remote: a repository on a
// host.
type Writer struct {
	// ID is the repository's writer id (random, kept in the repository):
	// it alone decides whether the claim is this appliance's.
	ID string `json:"id"`
	// Host and Repo say where the appliance is, for people.
	Host string `json:"host,omitempty"`
	Repo string `json:"repo,omitempty"`
	// Since is when the appliance claimed the remote.
	Since time.Time `json:"since"`
}

func (w *Writer) String() string {
	s := fmt.Sprintf("repository %s on host %s", w.Repo, w.Host)
	if !w.Since.IsZero() {
		s += fmt.Sprintf(" (writing since %s)", w.Since.UTC().Format(time.RFC3339))
	}
	return s + " [writer id " + w.ID + "]"
}

// ErrOtherWriter says the remote is written by another appliance.
var ErrOtherWriter = errors.New("the remote is written by another appliance")

// OtherWriterError is ErrOtherWriter with the appliance that holds the
// claim.
type OtherWriterError struct {
	Op    string // replicate, prune, forget
	Owner Writer
}

func (e *OtherWriterError) Error() string {
	return fmt.Sprintf("%s refused: %v: %s; nothing was written (once that appliance is gone for good, cairn remote takeover on this one makes it the writer)", e.Op, ErrOtherWriter, e.Owner.String())
}

// Is makes errors.Is(err, ErrOtherWriter) true.
func (e *OtherWriterError) Is(target error) bool { return target == ErrOtherWriter }

// writerAD is the additional data of the sealed claim.
var writerAD = []byte(writerName)

// CurrentWriter reads the claim: nil when no appliance has claimed the
// remote (a remote written only by a cairn from before claims, or only
// by library callers without Options.Writer).
func (r *Remote) CurrentWriter(ctx context.Context) (*Writer, error) {
	var w *Writer
	err := r.readVersions(ctx, writerName, func(data []byte) error {
		plain, err := open(r.keys.aead, nil, data, writerAD)
		if err != nil {
			return fmt.Errorf("%w: %s", ErrCorrupt, writerName)
		}
		var got Writer
		if err := json.Unmarshal(plain, &got); err != nil || got.ID == "" {
			return fmt.Errorf("%w: %s: not a writer claim", ErrFormat, writerName)
		}
		w = &got
		return nil
	})
	if errors.Is(err, ErrNotFound) {
		return nil, nil
	}
	return w, err
}

// putWriter stores w as the claim.
func (r *Remote) putWriter(ctx context.Context, w Writer) error {
	plain, err := json.Marshal(w)
	if err != nil {
		return err
	}
	_, err = r.st.put(ctx, writerName, seal(r.keys.aead, nil, plain, writerAD), putOptions{retainUntil: retainUntil(r.opts.ImmutableDays)})
	return err
}

// checkWriter lets op go on when the remote is this appliance's
// (Options.Writer): an unclaimed remote is claimed first; a remote
// claimed by another appliance is refused with an *OtherWriterError.
// Without Options.Writer nothing is checked.
func (r *Remote) checkWriter(ctx context.Context, op string) error {
	me := r.opts.Writer
	if me == nil || me.ID == "" {
		return nil
	}
	cur, err := r.CurrentWriter(ctx)
	if err != nil {
		return fmt.Errorf("%s: read the remote's writer claim: %w", op, err)
	}
	if cur != nil {
		if cur.ID == me.ID {
			return nil
		}
		return &OtherWriterError{Op: op, Owner: *cur}
	}
	claim := *me
	claim.Since = time.Now().UTC()
	if err := r.putWriter(ctx, claim); err != nil {
		return fmt.Errorf("%s: claim the remote for this appliance: %w", op, err)
	}
	// Two appliances claiming an unclaimed remote at once: the later PUT
	// wins, and the one that reads back the other's claim stops here.
	cur, err = r.CurrentWriter(ctx)
	if err != nil {
		return fmt.Errorf("%s: read the remote's writer claim: %w", op, err)
	}
	if cur == nil || cur.ID != me.ID {
		if cur == nil {
			return fmt.Errorf("%s: %w: the claim written was not read back", op, ErrNotFound)
		}
		return &OtherWriterError{Op: op, Owner: *cur}
	}
	r.log.Info("remote claimed for this appliance", "bucket", r.st.bucket, "writer", me.ID)
	return nil
}

// TakeOver makes this appliance (Options.Writer) the remote's writer and
// returns the claim it replaced (nil when there was none). The appliance
// named there is refused from then on: run it only once that appliance
// is gone or stopped for good.
func (r *Remote) TakeOver(ctx context.Context) (*Writer, error) {
	me := r.opts.Writer
	if me == nil || me.ID == "" {
		return nil, errors.New("take over: no writer id given")
	}
	prev, err := r.CurrentWriter(ctx)
	if err != nil && !errors.Is(err, ErrCorrupt) && !errors.Is(err, ErrFormat) {
		return nil, err
	}
	if prev != nil && prev.ID == me.ID {
		return prev, nil
	}
	claim := *me
	claim.Since = time.Now().UTC()
	if err := r.putWriter(ctx, claim); err != nil {
		return nil, err
	}
	return prev, nil
}
