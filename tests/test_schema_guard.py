"""The service refuses a database schema newer than it knows, and says what to do."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import text

from service.cli import main
from service.errors import StorageError
from service.storage import make_engine, migrate
from tests.conftest import RULES


def test_newer_schema_is_refused_with_the_fix(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "dw.db"
    engine = make_engine(f"sqlite:///{db}")
    migrate(engine)
    with engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '9999'"))
    with pytest.raises(StorageError, match="newer than this detainer-watch.*upgrade"):
        migrate(engine)
    engine.dispose()
    config = tmp_path / "c.toml"
    config.write_text(
        f'[database]\nurl = "sqlite:///{db}"\n[matcher]\nrules = "{RULES}"\n', encoding="utf-8"
    )
    for command in ("migrate", "worker", "api", "run"):
        assert main(["--config", str(config), command]) == 1
        err = capsys.readouterr().err
        assert "revision 9999" in err and "upgrade detainer-watch" in err, err
