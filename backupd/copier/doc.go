// Package copier moves disk areas from a source (a local image, a block
// device, an NBD export) into a repository disk writer: block-aligned,
// in parallel, with progress. Every transport of backupd ends here.
package copier
