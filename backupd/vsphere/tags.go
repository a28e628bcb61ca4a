package vsphere

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/vmware/govmomi/vapi/rest"
	"github.com/vmware/govmomi/vapi/tags"
)

// taggedVMs returns the MoRef values of the VMs that carry any of the tags
// ("category:tag" or "tag"), read through a vSphere Automation API session
// logged in with cred and logged out before it returns.
func (c *Conn) taggedVMs(ctx context.Context, cred Credentials, specs []string) (map[string]bool, error) {
	if cred.User == "" || cred.Password == "" {
		return nil, errors.New("selecting VMs by tag needs a vSphere Automation API session: give the vCenter credentials in Selection.Credentials")
	}
	rc := rest.NewClient(c.Client)
	if err := rc.Login(ctx, url.UserPassword(cred.User, cred.Password)); err != nil {
		if rest.IsStatusError(err, http.StatusUnauthorized) {
			return nil, fmt.Errorf("log in to the vSphere Automation API of %s as %s (for tags): wrong user name or password", c.URL.Host, cred.User)
		}
		return nil, fmt.Errorf("log in to the vSphere Automation API of %s as %s (for tags): %w", c.URL.Host, cred.User, err)
	}
	defer func() {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		if err := rc.Logout(ctx); err != nil {
			c.log.Warn("log out of the vSphere Automation API", "vcenter", c.URL.Host, "err", err)
		}
	}()
	idx := &tagIndex{m: tags.NewManager(rc), byCategory: map[string][]tags.Tag{}}
	cats, err := idx.m.GetCategories(ctx)
	if err != nil {
		return nil, fmt.Errorf("list tag categories: %w", err)
	}
	idx.categories = cats
	var ids []string
	for _, spec := range specs {
		found, err := idx.resolve(ctx, spec)
		if err != nil {
			return nil, err
		}
		for _, id := range found {
			if !slices.Contains(ids, id) {
				ids = append(ids, id)
			}
		}
	}
	attached, err := idx.m.ListAttachedObjectsOnTags(ctx, ids)
	if err != nil {
		return nil, fmt.Errorf("list objects carrying tags %v: %w", specs, err)
	}
	out := map[string]bool{}
	for _, a := range attached {
		for _, obj := range a.ObjectIDs {
			if ref := obj.Reference(); ref.Type == "VirtualMachine" {
				out[ref.Value] = true
			}
		}
	}
	return out, nil
}

// tagIndex looks tags up by name, reading each category's tags at most once.
type tagIndex struct {
	m          *tags.Manager
	categories []tags.Category
	byCategory map[string][]tags.Tag // category id -> its tags
}

func (x *tagIndex) tagsOf(ctx context.Context, cat tags.Category) ([]tags.Tag, error) {
	if ts, ok := x.byCategory[cat.ID]; ok {
		return ts, nil
	}
	ts, err := x.m.GetTagsForCategory(ctx, cat.ID)
	if err != nil {
		return nil, fmt.Errorf("list tags of category %s: %w", cat.Name, err)
	}
	x.byCategory[cat.ID] = ts
	return ts, nil
}

// find returns the ids of the tags named name in the categories keep accepts.
func (x *tagIndex) find(ctx context.Context, name string, keep func(tags.Category) bool) ([]string, error) {
	var ids []string
	for _, cat := range x.categories {
		if !keep(cat) {
			continue
		}
		ts, err := x.tagsOf(ctx, cat)
		if err != nil {
			return nil, err
		}
		for _, t := range ts {
			if t.Name == name {
				ids = append(ids, t.ID)
			}
		}
	}
	return ids, nil
}

// resolve returns the ids of the tags spec names: "category:tag", or
// "tag" in any category (also the fallback for a tag whose own name
// holds a colon). Nothing found is an error listing the tags that exist.
func (x *tagIndex) resolve(ctx context.Context, spec string) ([]string, error) {
	s := strings.TrimSpace(spec)
	if s == "" {
		return nil, errors.New("empty tag in the selection")
	}
	if catName, tagName, ok := strings.Cut(s, ":"); ok {
		ids, err := x.find(ctx, tagName, func(c tags.Category) bool { return c.Name == catName })
		if err != nil || len(ids) > 0 {
			return ids, err
		}
	}
	ids, err := x.find(ctx, s, func(tags.Category) bool { return true })
	if err != nil || len(ids) > 0 {
		return ids, err
	}
	all, err := x.all(ctx)
	if err != nil {
		return nil, err
	}
	return nil, fmt.Errorf("tag %q not found; tags: %s", spec, listSome(all))
}

// all lists every tag as "category:tag", sorted.
func (x *tagIndex) all(ctx context.Context) ([]string, error) {
	var out []string
	for _, cat := range x.categories {
		ts, err := x.tagsOf(ctx, cat)
		if err != nil {
			return nil, err
		}
		for _, t := range ts {
			out = append(out, cat.Name+":"+t.Name)
		}
	}
	slices.Sort(out)
	return out, nil
}
