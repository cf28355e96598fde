from imagepipe_cli.main import run

run()
