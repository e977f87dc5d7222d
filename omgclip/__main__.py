from omgclip.cli import run

run()
