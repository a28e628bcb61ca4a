// Package nbdtest is a small NBD server for tests that speaks the protocol
// wrongly on purpose: a hostile or broken server, in one of several ways
// (Mode). It does the fixed newstyle handshake (structured replies,
// base:allocation, NBD_OPT_GO and NBD_OPT_EXPORT_NAME) and serves reads of
// a pattern, so a correct client gets as far as the misbehaviour.
//
// Vocabulary: a Mode is one way of misbehaving; Server listens on a unix
// socket and serves every connection in its Mode.
package nbdtest
