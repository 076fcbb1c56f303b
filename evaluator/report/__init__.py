"""What a scoring leaves behind: the typed result document and its schema (``result``), its seal
(``integrity``), its energy sections (``energy``), and the leaderboard built from many (``leaderboard``)."""
