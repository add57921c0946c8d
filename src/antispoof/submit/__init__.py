"""Submissions: the writer maps scores ("higher = more bona fide") to a competition's files and
0/1 coding; the scorer reads any submission back and scores it against a hidden solution."""
