"""The offline drift job: payload log reader, Evidently drift, runs, notifications."""
