"""The portal's database: models (:mod:`.models`), engine and migrations (:mod:`.db`).

Only the service layer (:mod:`ewsgate.portal.services`) and the control/OAuth servers read and
write these tables; the web UI and the REST API go through the service layer.
"""

from ewsgate.portal.store.db import Database, DatabaseUrlError, default_database_url, upgrade
from ewsgate.portal.store.types import Clock, UTCDateTime, utc_now

__all__ = ["Clock", "Database", "DatabaseUrlError", "UTCDateTime", "default_database_url",
           "upgrade", "utc_now"]
