// Package env is the built-in environment plugin: the user's command starts with the local
// environment overlaid by the target container's variables (include/exclude globs, then
// override). Variables that describe this machine (LocalOnly: PATH, HOME, USER, SHELL, TERM,
// PWD, …) stay local unless `include` names one of them exactly.
package env
