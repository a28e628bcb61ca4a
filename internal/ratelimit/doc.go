// Package ratelimit caps the bandwidth a run of transfers may use: one
// token bucket shared by every concurrent upload and download of the run
// (the packs replicate sends in parallel, the ranged GETs a mount or pull
// keeps in flight), taken as bodies stream rather than per whole object.
//
// Vocabulary:
//
//	Rate      bytes per second; 0 is Unlimited. ParseRate reads 800k,
//	          50M, 1.5G (1024-based, like curl --limit-rate), 100Mbit
//	          (bits, 1000-based) and unlimited.
//	Window    a span of the week (Mon-Fri 08:00-18:00) in the local time
//	          of the clock; a span whose end is before its start runs
//	          past midnight.
//	Schedule  a Rate and the Windows it applies in (none: always);
//	          outside them transfers are unlimited (Veeam's "throttle
//	          during business hours").
//	Limiter   the shared bucket: Wait(ctx, n) takes n bytes' worth of
//	          tokens, sleeping as long as the Schedule's rate at that
//	          moment asks; the bucket holds at most a tenth of a second's
//	          worth (at least MaxChunk), so a 32 MiB object never bursts.
//	Clock     where the Limiter reads the time and sleeps; tests inject
//	          a fake one and assert the waits asked for.
//
// Nothing here is global: each run makes its own Limiter.
package ratelimit
