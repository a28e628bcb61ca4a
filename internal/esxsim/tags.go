package esxsim

import (
	"context"
	"crypto/x509"
	"fmt"
	"net/url"

	// The vAPI simulator serves /rest and /api (sessions, tag categories,
	// tags, associations) on the same HTTPS server as /sdk.
	_ "github.com/vmware/govmomi/vapi/simulator"

	"github.com/vmware/govmomi/vapi/rest"
	"github.com/vmware/govmomi/vapi/tags"
	"github.com/vmware/govmomi/vim25"
	"github.com/vmware/govmomi/vim25/soap"
	"github.com/vmware/govmomi/vim25/types"
)

// TagVM attaches vSphere tags ("category:tag") to the named VM through the
// vSphere Automation API, creating missing categories (cardinality
// MULTIPLE) and tags, as an administrator would in the vSphere Client.
func (s *Sim) TagVM(ctx context.Context, vm string, tagSpecs ...string) error {
	ref, err := s.VMRef(vm)
	if err != nil {
		return err
	}
	for _, t := range tagSpecs {
		if _, _, err := splitTag(t); err != nil {
			return err
		}
	}
	return s.withTagManager(ctx, func(t *tagger) error {
		return t.attach(ctx, ref, tagSpecs)
	})
}

// attachSpecTags attaches the tags of every VMSpec in one vAPI session.
func (s *Sim) attachSpecTags(ctx context.Context, specs []VMSpec) error {
	tagged := false
	for _, spec := range specs {
		tagged = tagged || len(spec.Tags) > 0
	}
	if !tagged {
		return nil
	}
	return s.withTagManager(ctx, func(t *tagger) error {
		for _, spec := range specs {
			if len(spec.Tags) == 0 {
				continue
			}
			ref, err := s.VMRef(spec.Name)
			if err != nil {
				return err
			}
			if err := t.attach(ctx, ref, spec.Tags); err != nil {
				return fmt.Errorf("vm %s: %w", spec.Name, err)
			}
		}
		return nil
	})
}

// tagger creates and attaches tags through one vAPI session, remembering
// the ids it has seen.
type tagger struct {
	m          *tags.Manager
	categories map[string]string // name -> id
	tags       map[string]string // "category:tag" -> id
}

// withTagManager logs in to the simulator's own vAPI endpoint over HTTPS
// (trusting only its certificate), runs f and logs out.
func (s *Sim) withTagManager(ctx context.Context, f func(*tagger) error) error {
	sc := soap.NewClient(s.URL, false)
	sc.SetThumbprint(s.URL.Host, s.Thumbprint)
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(s.CertificatePEM)
	sc.DefaultTransport().TLSClientConfig.RootCAs = pool
	vc, err := vim25.NewClient(ctx, sc)
	if err != nil {
		return fmt.Errorf("vAPI client: %w", err)
	}
	rc := rest.NewClient(vc)
	if err := rc.Login(ctx, url.UserPassword(s.User, s.Password)); err != nil {
		return fmt.Errorf("vAPI login: %w", err)
	}
	defer func() { _ = rc.Logout(context.WithoutCancel(ctx)) }()
	t := &tagger{m: tags.NewManager(rc), categories: map[string]string{}, tags: map[string]string{}}
	cats, err := t.m.GetCategories(ctx)
	if err != nil {
		return fmt.Errorf("list tag categories: %w", err)
	}
	for _, c := range cats {
		t.categories[c.Name] = c.ID
	}
	return f(t)
}

// attach attaches the tags to ref, creating what is missing.
func (t *tagger) attach(ctx context.Context, ref types.ManagedObjectReference, tagSpecs []string) error {
	var ids []string
	for _, spec := range tagSpecs {
		id, err := t.tagID(ctx, spec)
		if err != nil {
			return err
		}
		ids = append(ids, id)
	}
	if err := t.m.AttachMultipleTagsToObject(ctx, ids, ref); err != nil {
		return fmt.Errorf("attach tags %v to %s: %w", tagSpecs, ref.Value, err)
	}
	return nil
}

// tagID returns the id of the tag "category:tag", creating the category
// and the tag when they do not exist.
func (t *tagger) tagID(ctx context.Context, spec string) (string, error) {
	if id, ok := t.tags[spec]; ok {
		return id, nil
	}
	catName, tagName, err := splitTag(spec)
	if err != nil {
		return "", err
	}
	catID, ok := t.categories[catName]
	if !ok {
		catID, err = t.m.CreateCategory(ctx, &tags.Category{Name: catName, Cardinality: "MULTIPLE"})
		if err != nil {
			return "", fmt.Errorf("create tag category %s: %w", catName, err)
		}
		t.categories[catName] = catID
	}
	existing, err := t.m.GetTagsForCategory(ctx, catID)
	if err != nil {
		return "", fmt.Errorf("list tags of category %s: %w", catName, err)
	}
	for _, tag := range existing {
		if tag.Name == tagName {
			t.tags[spec] = tag.ID
			return tag.ID, nil
		}
	}
	id, err := t.m.CreateTag(ctx, &tags.Tag{Name: tagName, CategoryID: catID})
	if err != nil {
		return "", fmt.Errorf("create tag %s: %w", spec, err)
	}
	t.tags[spec] = id
	return id, nil
}
