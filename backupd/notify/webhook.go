package notify

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
)

// WebhookConfig is a webhook target: an HTTP(S) POST per event.
type WebhookConfig struct {
	// URL, or URLFile holding it (for URLs that are secrets themselves,
	// like Slack's incoming webhooks).
	URL, URLFile string
	// Headers are sent with each request (not secrets: see TokenFile).
	Headers map[string]string
	// TokenFile holds a bearer token sent as Authorization: Bearer TOKEN.
	TokenFile string
	// Format is "json" (default: Payload) or "slack" ({"text": ...}, also
	// understood by Mattermost, Rocket.Chat and Teams' Slack-compatible hooks).
	Format string
	// CAFile is a PEM file of CAs trusted besides the system's.
	CAFile string
}

// Webhook formats.
const (
	FormatJSON  = "json"
	FormatSlack = "slack"
)

type webhook struct{ cfg WebhookConfig }

func (w *webhook) send(ctx context.Context, ev Event, host string) error {
	u := w.cfg.URL
	secretURL := ""
	if w.cfg.URLFile != "" {
		var err error
		if u, err = readSecret(w.cfg.URLFile); err != nil {
			return err
		}
		secretURL = u
	}
	pu, err := url.Parse(u)
	if err != nil {
		return fmt.Errorf("%w: url: %v", ErrRejected, redact(err.Error(), secretURL))
	}
	var body []byte
	if w.cfg.Format == FormatSlack {
		body, err = json.Marshal(map[string]string{"text": ev.Text(host)})
	} else {
		body, err = json.Marshal(ev.payload(host))
	}
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("%w: %v", ErrRejected, redact(err.Error(), secretURL))
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "cairn-notify/1")
	for k, v := range w.cfg.Headers {
		req.Header.Set(k, v)
	}
	if w.cfg.TokenFile != "" {
		tok, err := readSecret(w.cfg.TokenFile)
		if err != nil {
			return err
		}
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	tc, err := tlsConfig(pu.Hostname(), w.cfg.CAFile)
	if err != nil {
		return err
	}
	tr := &http.Transport{TLSClientConfig: tc, Proxy: http.ProxyFromEnvironment}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := client.Do(req)
	if err != nil {
		// url.Error quotes the URL: keep a secret one out of logs.
		return redacted{classify(err), secretURL}
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	switch {
	case resp.StatusCode >= 200 && resp.StatusCode < 300:
		return nil
	case resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden:
		return fmt.Errorf("%w: HTTP %s: %s", ErrAuth, resp.Status, bytes.TrimSpace(msg))
	case resp.StatusCode >= 400 && resp.StatusCode < 500 && resp.StatusCode != http.StatusRequestTimeout && resp.StatusCode != http.StatusTooManyRequests:
		return fmt.Errorf("%w: HTTP %s: %s", ErrRejected, resp.Status, bytes.TrimSpace(msg))
	}
	return fmt.Errorf("HTTP %s: %s", resp.Status, bytes.TrimSpace(msg))
}
