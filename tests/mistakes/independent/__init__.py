"""Answers written apart from labkit's own code, as students write them: for each seam a
right one (``good``) and, in ``MISTAKES``, realistic ones that each differ from it in one
place. Each mistake names the rule a *visible* check of the lab runs that must catch it,
and a word its message must contain (the mistake, named)."""
