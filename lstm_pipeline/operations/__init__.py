"""Operations (issue #10): backups, restore, exports, retention, alert channels, monitoring.

Plain modules, no Dagster import: the assets, jobs and the ``lstm-pipeline`` CLI call them.
"""
