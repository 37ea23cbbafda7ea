from initlab.cli import app

app()
