// Package archtest holds no code: its test keeps the import graph of SPEC
// §1 (schema depends on nothing of apd's; publisher, broker and subscriber
// never import each other).
package archtest
