"""The submission service (``edl serve``): teams upload, the organiser's machine measures, everyone sees the board.

``settings`` declares the competition once; ``store`` is its database (teams, submissions, the leased queue);
``worker`` scores the queue through the batch machinery; ``phases`` moves the competition from open to published.
"""
