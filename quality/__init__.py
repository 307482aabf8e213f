"""Quality gates (Great Expectations suites and the gates that apply them).

No gate exists yet: every rendered segment is accepted. The gates plug in
between composite and encode, where a rejected segment is re-rendered.
"""
