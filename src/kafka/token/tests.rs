use std::collections::VecDeque;

use futures::future::BoxFuture;

use super::*;

/// A provider that answers from a script (a token lasting the given time, or a failure), counting its calls.
struct Scripted {
    answers: Mutex<VecDeque<Result<Duration, &'static str>>>,
    calls: std::sync::atomic::AtomicUsize,
}

impl Scripted {
    fn new(answers: impl IntoIterator<Item = Result<Duration, &'static str>>) -> Arc<Scripted> {
        Arc::new(Scripted {
            answers: Mutex::new(answers.into_iter().collect()),
            calls: Default::default(),
        })
    }

    fn calls(&self) -> usize {
        self.calls.load(std::sync::atomic::Ordering::SeqCst)
    }
}

impl TokenProvider for Scripted {
    fn fetch(&self) -> BoxFuture<'_, Result<BearerToken, TokenError>> {
        let call = self.calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let answer = self.answers.lock().unwrap().pop_front().unwrap_or(Err("script ended"));
        Box::pin(async move {
            // An endpoint takes a while: concurrent callers must wait for this one answer.
            tokio::time::sleep(Duration::from_millis(10)).await;
            match answer {
                Ok(lifetime) => Ok(BearerToken {
                    value: Secret::new(format!("token-{call}")),
                    expires_at: SystemTime::now() + lifetime,
                    principal: Some("cdc".to_owned()),
                }),
                Err(why) => Err(TokenError::Unavailable {
                    what: format!("idp: {why}"),
                    source: None,
                }),
            }
        })
    }

    fn describe(&self) -> String {
        "idp".to_owned()
    }
}

fn cache(provider: &Arc<Scripted>) -> TokenCache {
    TokenCache::new(
        Arc::clone(provider) as Arc<dyn TokenProvider>,
        Vec::new(),
        Backoff::new(Duration::from_secs(1), Duration::from_secs(4)),
    )
}

async fn value(cache: &TokenCache) -> Result<String, String> {
    cache
        .token()
        .await
        .map(|t| t.expose().to_owned())
        .map_err(|e| e.to_string())
}

#[tokio::test(start_paused = true)]
async fn a_token_serves_until_80_percent_of_its_life_then_is_refreshed() {
    let idp = Scripted::new([Ok(Duration::from_secs(100)), Ok(Duration::from_secs(100))]);
    let cache = cache(&idp);
    assert_eq!(value(&cache).await.unwrap(), "token-0");
    tokio::time::advance(Duration::from_secs(79)).await;
    cache.refresh_if_due().await;
    assert_eq!(value(&cache).await.unwrap(), "token-0");
    assert_eq!(idp.calls(), 1);
    tokio::time::advance(Duration::from_secs(2)).await;
    cache.refresh_if_due().await;
    assert_eq!(idp.calls(), 2, "refreshed at 80%, before it expires");
    assert_eq!(value(&cache).await.unwrap(), "token-1");
    assert_eq!(cache.failure(), None);
}

#[tokio::test(start_paused = true)]
async fn connections_that_need_a_token_at_once_share_one_fetch() {
    let idp = Scripted::new([Ok(Duration::from_secs(100))]);
    let cache = cache(&idp);
    let all = futures::future::join_all((0..20).map(|_| value(&cache))).await;
    assert!(all.iter().all(|t| t.as_deref() == Ok("token-0")), "{all:?}");
    assert_eq!(idp.calls(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_failed_refresh_keeps_the_good_token_retries_with_backoff_and_says_so_until_it_heals() {
    let metrics = Arc::new(Metrics::new());
    let idp = Scripted::new([
        Ok(Duration::from_secs(10)),
        Err("HTTP 401"),
        Err("HTTP 401"),
        Err("HTTP 401"),
        Ok(Duration::from_secs(10)),
    ]);
    let cache = cache(&idp);
    cache.count_in(Arc::clone(&metrics));
    assert_eq!(value(&cache).await.unwrap(), "token-0");
    tokio::time::advance(Duration::from_secs(8)).await;
    // Due; the refresh fails, and the token still good serves.
    assert_eq!(value(&cache).await.unwrap(), "token-0");
    assert_eq!(cache.failure().as_deref(), Some("idp: HTTP 401"));
    // Within the backoff (1 s) nobody asks the endpoint again, however many connections open.
    for _ in 0..5 {
        assert_eq!(value(&cache).await.unwrap(), "token-0");
    }
    assert_eq!(idp.calls(), 2);
    tokio::time::advance(Duration::from_millis(1100)).await;
    cache.refresh_if_due().await;
    assert_eq!(idp.calls(), 3);
    // Then 2 s: the token (10 s from the start) expires meanwhile, and the failure is the answer.
    tokio::time::advance(Duration::from_millis(1000)).await;
    assert_eq!(value(&cache).await.unwrap_err(), "idp: HTTP 401");
    assert_eq!(idp.calls(), 3, "still backing off");
    tokio::time::advance(Duration::from_millis(1100)).await;
    assert_eq!(value(&cache).await.unwrap_err(), "idp: HTTP 401");
    assert_eq!(idp.calls(), 4);
    tokio::time::advance(Duration::from_secs(4)).await;
    assert_eq!(value(&cache).await.unwrap(), "token-4");
    assert_eq!(cache.failure(), None, "healed");
    let scraped = metrics.render();
    assert!(
        scraped.contains("cdc_kafka_token_refresh_failures_total 3"),
        "{scraped}"
    );
}

#[test]
fn the_initial_response_is_rfc_7628_as_kafka_writes_it() {
    assert_eq!(
        initial_response("abc.def.ghi", &[]),
        b"n,,\x01auth=Bearer abc.def.ghi\x01\x01"
    );
    let extensions = [
        ("logicalCluster".to_owned(), "lkc-1".to_owned()),
        ("pool".to_owned(), "p 2".to_owned()),
    ];
    assert_eq!(
        initial_response("t", &extensions),
        b"n,,\x01auth=Bearer t\x01logicalCluster=lkc-1\x01pool=p 2\x01\x01"
    );
}
