package fr.esante.socle.validator;

import ca.uhn.fhir.context.FhirContext;
import ca.uhn.fhir.context.support.DefaultProfileValidationSupport;
import ca.uhn.fhir.interceptor.api.HookParams;
import ca.uhn.fhir.interceptor.api.Pointcut;
import ca.uhn.fhir.interceptor.executor.InterceptorService;
import ca.uhn.fhir.jpa.interceptor.validation.IRepositoryValidatingRule;
import ca.uhn.fhir.jpa.interceptor.validation.RepositoryValidatingInterceptor;
import ca.uhn.fhir.jpa.interceptor.validation.RepositoryValidatingRuleBuilder;
import ca.uhn.fhir.jpa.validation.ValidationSettings;
import ca.uhn.fhir.jpa.validation.ValidatorPolicyAdvisor;
import ca.uhn.fhir.rest.api.server.RequestDetails;
import ca.uhn.fhir.rest.api.server.SystemRequestDetails;
import ca.uhn.fhir.rest.server.exceptions.BaseServerResponseException;
import fr.esante.socle.hapi.InsQualifiedIdentityInterceptor;
import java.lang.reflect.Field;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import org.hl7.fhir.common.hapi.validation.support.CommonCodeSystemsTerminologyService;
import org.hl7.fhir.common.hapi.validation.support.InMemoryTerminologyServerValidationSupport;
import org.hl7.fhir.common.hapi.validation.support.SnapshotGeneratingValidationSupport;
import org.hl7.fhir.common.hapi.validation.support.ValidationSupportChain;
import org.hl7.fhir.instance.model.api.IBaseResource;
import org.hl7.fhir.r4.model.BooleanType;
import org.hl7.fhir.r4.model.OperationOutcome;

/**
 * Runs HAPI FHIR's own classes (the version of the pinned server) on sample resources, one JSON line per sample:
 *
 * <ul>
 *   <li>{@code rule}: the kit's INS rule (FHIRPath, read from the rendered application.yaml) evaluated by HAPI's
 *       FHIRPath engine;
 *   <li>{@code converse}: FR Core's invariant fr-core-1 (VALI implies INS), its expression as FR Core publishes it;
 *   <li>{@code repository}: {@link RepositoryValidatingInterceptor} with the rules the starter builds from the stored
 *       StructureDefinitions of a type ({@code requireAtLeastOneProfileOf(urls).and().requireValidationToDeclaredProfiles()},
 *       RepositoryValidationInterceptorFactoryR4), called through the interceptor service at
 *       STORAGE_PRESTORAGE_RESOURCE_CREATED as the JPA server calls it: "accepted" or "refused: the errors";
 *   <li>{@code interceptor}: the kit's {@link InsQualifiedIdentityInterceptor} (socle-ins-1) at the same pointcut.
 * </ul>
 *
 * <p>Usage: {@code Prove <rule file> <fr-core-1 file> <type> <profile urls, comma-separated> <resource.json>...}
 */
public final class Prove {

	private Prove() {}

	public static void main(String[] args) throws Exception {
		if (args.length < 5) {
			System.err.println("usage: Prove RULE_FILE CONVERSE_FILE TYPE PROFILE_URLS RESOURCE.json...");
			System.exit(2);
		}
		String rule = Files.readString(Path.of(args[0]), StandardCharsets.UTF_8).strip();
		String converse = Files.readString(Path.of(args[1]), StandardCharsets.UTF_8).strip();
		String type = args[2];
		String[] profiles = args[3].split(",");

		FhirContext ctx = FhirContext.forR4Cached();
		ValidationSupportChain support = new ValidationSupportChain(
				new DefaultProfileValidationSupport(ctx),
				new SnapshotGeneratingValidationSupport(ctx),
				new InMemoryTerminologyServerValidationSupport(ctx),
				new CommonCodeSystemsTerminologyService(ctx));

		InterceptorService hooks = new InterceptorService();
		// The beans the server @Autowires into the rule builder (no database here: no stored-resource fetcher).
		ValidatorPolicyAdvisor advisor = new ValidatorPolicyAdvisor();
		inject(advisor, "myValidationSettings", new ValidationSettings());
		inject(advisor, "myFhirContext", ctx);
		RepositoryValidatingRuleBuilder builder = new RepositoryValidatingRuleBuilder(support);
		inject(builder, "myFhirContext", ctx);
		inject(builder, "myValidationPolicyAdvisor", advisor);
		inject(builder, "myInterceptorBroadcaster", hooks);
		builder.forResourcesOfType(type)
				.requireAtLeastOneProfileOf(profiles)
				.and()
				.requireValidationToDeclaredProfiles();
		List<IRepositoryValidatingRule> rules = builder.build();
		RepositoryValidatingInterceptor interceptor = new RepositoryValidatingInterceptor(ctx, rules);
		hooks.registerInterceptor(interceptor);

		// The kit's interceptor, as the server registers it (hapi.fhir.custom-interceptor-classes), on its own service.
		InterceptorService insHooks = new InterceptorService();
		insHooks.registerInterceptor(new InsQualifiedIdentityInterceptor());

		var fhirPath = ctx.newFhirPath();
		List<String> lines = new ArrayList<>();
		for (int i = 4; i < args.length; i++) {
			String text = Files.readString(Path.of(args[i]), StandardCharsets.UTF_8);
			IBaseResource resource = ctx.newJsonParser().parseResource(text);
			boolean ruleHolds = fhirPath.evaluateFirst(resource, rule, BooleanType.class)
					.map(BooleanType::booleanValue)
					.orElseThrow(() -> new IllegalStateException("the INS rule gave no boolean"));
			boolean converseHolds = fhirPath.evaluateFirst(resource, converse, BooleanType.class)
					.map(BooleanType::booleanValue)
					.orElseThrow(() -> new IllegalStateException("fr-core-1 gave no boolean"));
			String repository;
			try {
				RequestDetails request = new SystemRequestDetails();
				hooks.callHooks(
						Pointcut.STORAGE_PRESTORAGE_RESOURCE_CREATED,
						new HookParams()
								.add(RequestDetails.class, request)
								.addIfMatchesType(ca.uhn.fhir.rest.server.servlet.ServletRequestDetails.class, request)
								.add(IBaseResource.class, resource)
								.add(ca.uhn.fhir.interceptor.model.RequestPartitionId.class, null)
								.add(ca.uhn.fhir.rest.api.server.storage.TransactionDetails.class,
										new ca.uhn.fhir.rest.api.server.storage.TransactionDetails()));
				repository = "accepted";
			} catch (BaseServerResponseException e) {
				// The interceptor reports the outcome's first issue, which may be a warning: list the errors.
				List<String> errors = new ArrayList<>();
				if (e.getOperationOutcome() instanceof OperationOutcome outcome) {
					for (OperationOutcome.OperationOutcomeIssueComponent issue : outcome.getIssue()) {
						if (issue.getSeverity() == OperationOutcome.IssueSeverity.ERROR
								|| issue.getSeverity() == OperationOutcome.IssueSeverity.FATAL) {
							errors.add(issue.getDiagnostics());
						}
					}
				}
				repository = "refused: " + (errors.isEmpty() ? e.getMessage() : String.join(" | ", errors));
			}
			String ins = store(insHooks, resource);
			lines.add("{\"file\":" + json(Path.of(args[i]).getFileName().toString())
					+ ",\"rule\":" + ruleHolds
					+ ",\"converse\":" + converseHolds
					+ ",\"repository\":" + json(repository)
					+ ",\"interceptor\":" + json(ins) + "}");
		}
		System.out.println("rules: " + json(interceptor.describeRules()).replace("\n", " "));
		System.out.println("interceptor rule: " + json(InsQualifiedIdentityInterceptor.RULE));
		lines.forEach(System.out::println);
	}

	/** The create hook as the JPA server calls it: "accepted" or "refused: message". */
	private static String store(InterceptorService theHooks, IBaseResource theResource) {
		RequestDetails request = new SystemRequestDetails();
		try {
			theHooks.callHooks(
					Pointcut.STORAGE_PRESTORAGE_RESOURCE_CREATED,
					new HookParams()
							.add(RequestDetails.class, request)
							.addIfMatchesType(ca.uhn.fhir.rest.server.servlet.ServletRequestDetails.class, request)
							.add(IBaseResource.class, theResource)
							.add(ca.uhn.fhir.interceptor.model.RequestPartitionId.class, null)
							.add(ca.uhn.fhir.rest.api.server.storage.TransactionDetails.class,
									new ca.uhn.fhir.rest.api.server.storage.TransactionDetails()));
			return "accepted";
		} catch (BaseServerResponseException e) {
			return "refused: " + e.getStatusCode() + " " + e.getMessage();
		}
	}

	private static void inject(Object target, String field, Object value) throws ReflectiveOperationException {
		Field f = target.getClass().getDeclaredField(field);
		f.setAccessible(true);
		f.set(target, value);
	}

	private static String json(String s) {
		StringBuilder out = new StringBuilder("\"");
		for (char c : s.toCharArray()) {
			switch (c) {
				case '"' -> out.append("\\\"");
				case '\\' -> out.append("\\\\");
				case '\n' -> out.append("\\n");
				case '\r' -> out.append("\\r");
				case '\t' -> out.append("\\t");
				default -> {
					if (c < 0x20) {
						out.append(String.format("\\u%04x", (int) c));
					} else {
						out.append(c);
					}
				}
			}
		}
		return out.append('"').toString();
	}
}
