"""test-support generators that sign real data; not used by the verifier"""
