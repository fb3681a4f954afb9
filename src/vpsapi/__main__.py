from vpsapi.cli import app

app()
