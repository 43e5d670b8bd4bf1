"""The test harness: the real service as a process, a throwaway PostgreSQL, the crash loop and the demo."""
