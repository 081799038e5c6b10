//! Every operation of the API through the typed client, its answer read as the API's own
//! response type (`Expect::expect::<T>`), in both modes: what the API serves parses back into
//! what the API declares.

use std::time::Duration;

use serde_json::json;
use truenumber_api::routes::{
    app::{AppVerification, AppVerificationList},
    company::{
        api_keys::{ApiKeyList, IssuedApiKey, RolledApiKey},
        deliveries::{Recovery, Redelivery, WebhookDeliveryDetail, WebhookDeliveryList},
        profile::{CompanyProfile, ConsoleLink},
        webhook::{RotatedWebhookSecret, WebhookEndpoint, WebhookTest},
    },
    verification::{
        flow::{
            DenyVerificationResponse, InitiateVerificationResponse, SubmitVerificationResponse,
            VerificationStatus, VerificationStatusResponse,
        },
        records::{VerificationList, VerificationSummary},
    },
};

use crate::helpers::{Expect, NUMBER, TestApp, TestReceiver, TestWorker, eventually, unique};

#[tokio::test]
async fn every_operation_answers_its_declared_type() {
    let receiver = TestReceiver::start().await;
    let app = TestApp::spawn().await;
    let worker = TestWorker::spawn(&app.config).await;
    let c = app.create_company(&unique("c")).await;
    let key = c.api_key.as_str();
    let token = app.app_token("typed_user", Some(NUMBER));

    // The verification flow.
    let body = json!({"mobileNumber": NUMBER, "companyId": c.id, "requestId": unique("r")});
    let started = app
        .initiate(key, &body)
        .await
        .expect::<InitiateVerificationResponse>(200)
        .await;
    assert_eq!(started.mobile_number, NUMBER);
    let pending = app
        .status(key, &started.verification_id)
        .await
        .expect::<VerificationStatusResponse>(200)
        .await;
    assert_eq!(pending.status, VerificationStatus::Pending);
    let view = app
        .app_verification(&token, &started.verification_id)
        .await
        .expect::<AppVerification>(200)
        .await;
    assert_eq!(view.company_name, format!("{} Ltd", c.id));
    let listed = app
        .app_pending(&token)
        .await
        .expect::<AppVerificationList>(200)
        .await;
    assert_eq!(listed.data.len(), 1);
    let submitted = app
        .submit(
            &token,
            &json!({"verificationId": started.verification_id, "userConfirmedNumber": NUMBER,
                    "appUserId": "typed_user"}),
        )
        .await
        .expect::<SubmitVerificationResponse>(200)
        .await;
    assert_eq!(submitted.verification_id, started.verification_id);
    let second = app.new_session(&c, NUMBER).await;
    app.deny(&token, &second, "typed_user")
        .await
        .expect::<DenyVerificationResponse>(200)
        .await;
    let test_session = app.initiate_with(&c.test_api_key, &c, json!({})).await;
    let completed = app
        .complete(
            &c.test_api_key,
            test_session["verificationId"].as_str().unwrap(),
            "failed",
        )
        .await
        .expect::<VerificationStatusResponse>(200)
        .await;
    assert_eq!(completed.status, VerificationStatus::Failed);

    // The company's records.
    let page = app
        .list_verifications(key, "?limit=1")
        .await
        .expect::<VerificationList>(200)
        .await;
    assert_eq!(page.data.len(), 1);
    assert!(page.next_cursor.is_some());
    let summary = app
        .summarise_verifications(key, "")
        .await
        .expect::<VerificationSummary>(200)
        .await;
    assert_eq!((summary.verified, summary.denied), (1, 1));

    // Self-service: the profile, the webhook, keys.
    let profile = app
        .company_profile(key)
        .await
        .expect::<CompanyProfile>(200)
        .await;
    assert_eq!(profile.company_id, c.id);
    let link = app.console_link(key).await.expect::<ConsoleLink>(201).await;
    assert!(link.url.contains("/console/sign-in?token="));
    let endpoint = app
        .set_webhook(key, &receiver.url)
        .await
        .expect::<WebhookEndpoint>(200)
        .await;
    assert_eq!(endpoint.webhook_url, receiver.url);
    let sent = app
        .send_test_webhook(key)
        .await
        .expect::<WebhookTest>(202)
        .await;
    app.rotate_webhook_secret(key)
        .await
        .expect::<RotatedWebhookSecret>(200)
        .await;
    let keys = app.api_keys(key).await.expect::<ApiKeyList>(200).await;
    assert_eq!(keys.data.len(), 2);
    let made = app
        .new_api_key(key, json!({"label": "typed"}))
        .await
        .expect::<IssuedApiKey>(201)
        .await;
    let rolled = app
        .roll_api_key(key, &made.key.key_id, json!({"expiresInSeconds": 0}))
        .await
        .expect::<RolledApiKey>(201)
        .await;
    assert_eq!(
        app.revoke_api_key(key, &rolled.key.key_id).await.status(),
        204
    );

    // Deliveries: the test event arrives, and its delivery reads back and goes out again.
    receiver.wait_for(1, Duration::from_secs(20)).await;
    let delivery_id = sent.delivery_id.clone();
    let detail = eventually(Duration::from_secs(20), || async {
        let d = app
            .delivery(key, &delivery_id)
            .await
            .expect::<WebhookDeliveryDetail>(200)
            .await;
        (d.delivery.completed_at.is_some()).then_some(d)
    })
    .await;
    assert_eq!(detail.attempt_log.len(), 1);
    let deliveries = app
        .list_deliveries(key, "?limit=5")
        .await
        .expect::<WebhookDeliveryList>(200)
        .await;
    assert!(!deliveries.data.is_empty());
    app.redeliver(key, &delivery_id)
        .await
        .expect::<Redelivery>(202)
        .await;
    let since = chrono::Utc::now() - chrono::Duration::hours(1);
    let recovered = app
        .recover_deliveries(key, json!({ "since": since.to_rfc3339() }))
        .await
        .expect::<Recovery>(202)
        .await;
    assert_eq!(recovered.count, 0);

    // The last operations end things: the webhook goes, a session is erased.
    assert_eq!(app.delete_webhook(key).await.status(), 204);
    assert_eq!(app.erase_verification(key, &second).await.status(), 204);
    app.status(key, &second)
        .await
        .expect_error(404, "SESSION_NOT_FOUND")
        .await;
    worker.stop().await;
}
