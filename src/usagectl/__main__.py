from usagectl.cli.main import entry

entry()
