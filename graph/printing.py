"""`theanine.printing`: debugprint, pprint and pydotprint."""
