package serve

import (
	"fmt"
	"log/slog"
	"net/http"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/cairnbackup/cairn/backupd"
	"github.com/cairnbackup/cairn/backupd/anomaly"
	"github.com/cairnbackup/cairn/backupd/notify"
	"github.com/cairnbackup/cairn/blockmap"
	"github.com/cairnbackup/cairn/internal/bytesize"
)

// anomaly reads a job's anomaly: block: the thresholds of the
// suspicious-change verdict of its points (docs/backup.md, "Suspicious
// changes").
func (p *parser) anomaly(n *yaml.Node, what string) (anomaly.Thresholds, error) {
	var t anomaly.Thresholds
	m, err := p.fields(n, what+": anomaly", "disabled", "min_bytes", "min_share", "share_rise", "volume_factor", "baseline_points", "min_baseline")
	if err != nil {
		return t, err
	}
	if v := m["disabled"]; v != nil {
		if err := v.Decode(&t.Disabled); err != nil {
			return t, p.errf(v, "%s: anomaly: disabled: want true or false", what)
		}
	}
	if v := m["min_bytes"]; v != nil {
		if t.MinBytes, err = bytesize.Parse(v.Value); err != nil || v.Kind != yaml.ScalarNode || t.MinBytes <= 0 {
			return t, p.errf(v, "%s: anomaly: min_bytes %q: want a size like 64MiB or 1GiB", what, v.Value)
		}
	}
	for key, dst := range map[string]*float64{"min_share": &t.MinShare, "share_rise": &t.ShareRise, "volume_factor": &t.VolumeFactor} {
		v := m[key]
		if v == nil {
			continue
		}
		if err := v.Decode(dst); err != nil || *dst <= 0 {
			return t, p.errf(v, "%s: anomaly: %s: want a number > 0", what, key)
		}
	}
	for key, dst := range map[string]*int{"baseline_points": &t.BaselinePoints, "min_baseline": &t.MinBaseline} {
		v := m[key]
		if v == nil {
			continue
		}
		if err := v.Decode(dst); err != nil || *dst < 1 {
			return t, p.errf(v, "%s: anomaly: %s: want a number >= 1", what, key)
		}
	}
	if err := t.Validate(); err != nil {
		return t, p.errf(n, "%s: anomaly: %v", what, err)
	}
	return t, nil
}

// tellSuspicious tells suspicious_changes when the job's new point was
// flagged.
func (s *Server) tellSuspicious(job Job, r *RunRecord, res *backupd.Result, log *slog.Logger) {
	v, ok := anomaly.ReadVerdict(res.Point)
	if !ok || v.Status != anomaly.Suspicious {
		return
	}
	log.Warn("suspicious changes", "point", res.PointID, "reason", v.Reason)
	s.tell(notify.Event{Kind: notify.SuspiciousChanges, Severity: notify.Warning, Job: job.Name, VM: r.VM, Point: res.PointID,
		Error:   v.Reason,
		Summary: fmt.Sprintf("suspicious changes in %s: point %s looks encrypted (job %s)", r.VM, res.PointID, job.Name),
		Details: map[string]string{
			"written_bytes": fmt.Sprint(v.WrittenBytes), "high_entropy_bytes": fmt.Sprint(v.HighEntropyBytes),
			"baseline_points": fmt.Sprint(v.BaselinePoints),
			"acknowledge":     fmt.Sprintf("cairn points ack --vm %s --point %s", r.VM, res.PointID),
		}})
}

// pruneGuard keeps a VM's last clean point while it has unacknowledged
// suspicious points (backupd/anomaly.Guard).
func (s *Server) pruneGuard(log *slog.Logger) blockmap.PruneGuard {
	acks, err := anomaly.LoadAcks(s.repo.Dir())
	if err != nil {
		log.Warn("cannot read acknowledged suspicious points; every flagged point counts", "error", err)
	}
	return anomaly.Guard(acks)
}

// logProtected says which points retention kept for a suspicious change.
func logProtected(log *slog.Logger, pr *blockmap.PruneResult) {
	if pr == nil || len(pr.Protected) == 0 {
		return
	}
	var kept []string
	for _, p := range pr.Protected {
		kept = append(kept, p.Point+": "+p.Reason)
	}
	log.Warn("retention kept points for suspicious changes", "points", strings.Join(kept, "; "))
}

// handleAck is POST /api/v1/acks {"vm", "point", "note"}: acknowledge a
// suspicious point as a false alarm (audited like every POST; the
// acknowledgement records the token's name).
func (s *Server) handleAck(w http.ResponseWriter, r *http.Request) {
	var req struct {
		VM    string `json:"vm"`
		Point string `json:"point"`
		Note  string `json:"note"`
	}
	if err := decodeBody(w, r, &req); err != nil || req.VM == "" || req.Point == "" {
		reason := `no "vm" or "point"`
		if err != nil {
			reason = err.Error()
		}
		writeError(w, http.StatusBadRequest, fmt.Errorf(`want {"vm": NAME, "point": ID, "note": WHY} naming a point flagged suspicious: %s`, reason))
		return
	}
	p, err := s.repo.ResolvePoint(r.Context(), req.VM, req.Point)
	if err != nil {
		writeError(w, http.StatusNotFound, err)
		return
	}
	v, ok := anomaly.ReadVerdict(p)
	if !ok || v.Status != anomaly.Suspicious {
		writeError(w, http.StatusConflict, fmt.Errorf("point %s of %s is not flagged suspicious: there is nothing to acknowledge", p.ID, p.VM))
		return
	}
	by := "api"
	if id, ok := identityOf(r); ok && id.Name != "" {
		by = id.Name
	}
	a := anomaly.Ack{VM: p.VM, Point: p.ID, By: by, Note: req.Note}
	if err := anomaly.Acknowledge(s.repo.Dir(), a); err != nil {
		writeError(w, http.StatusInternalServerError, err)
		return
	}
	writeJSON(w, http.StatusOK, a)
}

// addSuspicious fills each VM's unacknowledged suspicious points and its
// last clean point.
func (s *Server) addSuspicious(vms []VMStatus, cat []blockmap.VMSummary) []VMStatus {
	acks, _ := anomaly.LoadAcks(s.repo.Dir())
	pts := map[string][]blockmap.Point{}
	for _, v := range cat {
		pts[v.Name] = v.Points
	}
	for i := range vms {
		for _, p := range pts[vms[i].Name] {
			if anomaly.Flagged(p, acks) {
				vms[i].Suspicious = append(vms[i].Suspicious, p.ID)
			}
		}
		if clean, _, ok := anomaly.LastClean(pts[vms[i].Name], acks); ok {
			vms[i].LastClean = clean.ID
		}
	}
	return vms
}

// PointEntry is a point of GET /api/v1/points: the point, and the
// acknowledgement of its suspicious verdict when it has one (as in cairn
// points --json).
type PointEntry struct {
	blockmap.Point
	// Acknowledged is the acknowledgement of a suspicious verdict (cairn
	// points ack, POST /api/v1/acks); absent when none.
	Acknowledged *anomaly.Ack `json:"acknowledged,omitempty"`
}

// withAcks is pts with their acknowledgements (never null).
func (s *Server) withAcks(pts []blockmap.Point) []PointEntry {
	acks, err := anomaly.LoadAcks(s.repo.Dir())
	if err != nil {
		s.log.Warn("cannot read acknowledged suspicious points", "error", err)
	}
	out := make([]PointEntry, len(pts))
	for i, p := range pts {
		out[i].Point = p
		if a, ok := acks[p.VM][p.ID]; ok {
			out[i].Acknowledged = &a
		}
	}
	return out
}
