"""Rewriting: the pattern engine and the rule tables it runs to a fixpoint."""
