"""The 24/7 livestream: tracks rendered ahead into a backlog, played with crossfades, encoded by ffmpeg, supervised."""
