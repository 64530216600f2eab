from jaxstyle.cli.main import entry

entry()
