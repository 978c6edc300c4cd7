"""What tests share and do not test: data builders, loopback servers, commands, paths."""
