// Package inject turns retrieved experiences into one system message for a
// chat request, within a token budget, treating experience text as untrusted
// reference material rather than instructions.
package inject
