"""Running a real federation: server, hospital daemon, approved-code gate, keys."""
